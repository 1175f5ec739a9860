// lnrr-bench group "proxy" (main.swift runs the groups; Benchmark.swift has the method).
import Foundation
import LNProxy
import LNTransport
import LNTransportNIO
import Logging
import NIOCore
import NIOPosix

// MARK: 3. Messages per second a -> b: direct, and through the proxy with and without recording.

/// Counts messages at b and completes when `expected` arrived.
final class Sink: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var count = 0
    var expected = Int.max
    var done: EventLoopPromise<Void>?
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        count += 1
        if count == expected { done?.succeed(()) }
    }
}

func throughput(viaProxy: Bool, recordingDirectory: String?, messages: Int, size: Int, hook: (any MessageHook)? = nil,
                retry: TimeAmount = .microseconds(50)) async throws -> Double {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let a = NodeSecret.random(), b = NodeSecret.random()
    let sink = Sink()
    sink.expected = messages
    sink.done = group.next().makePromise()
    let bServer = try await listenAsNodeB(group: group, secret: b) { sink }
    var port = bServer.localAddress!.port!
    var proxy: ProxyServer?
    if viaProxy {
        let started = try await startBenchProxy(group: group, a: a, b: b, upstreamPort: port, recordingDirectory: recordingDirectory, hook: hook)
        (proxy, port) = (started.0, started.1)
    }
    let handshake = group.next().makePromise(of: Void.self)
    final class Ready: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<Void>
        init(_ p: EventLoopPromise<Void>) { promise = p }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) { promise.succeed(()) }
    }
    let client = try await ClientBootstrap(group: group)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .initiator(remote: b.nodeID), localSecret: a), Ready(handshake)])
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    try await handshake.futureResult.get()
    var payload = [UInt8](repeating: 0x33, count: size)
    payload[0] = 0x80; payload[1] = 0x01
    let start = now()
    // Write in chunks, respecting writability, so the sender is paced by the path it measures.
    try await client.eventLoop.submit {
        var sent = 0
        func pump() {
            while sent < messages && client.isWritable {
                client.write(client.allocator.buffer(bytes: payload), promise: nil)
                sent += 1
                if sent % 64 == 0 { client.flush() }
            }
            client.flush()
            if sent < messages {
                client.eventLoop.scheduleTask(in: retry) { pump() }
            }
        }
        pump()
    }.get()
    try await sink.done!.futureResult.get()
    let elapsed = now() - start
    try await client.close()
    if let proxy { await proxy.shutdown() }
    try await bServer.close()
    try await group.shutdownGracefully()
    return Double(messages) / elapsed
}

func proxyBenchmarks(results: Results) async throws {
    let messages = 300_000
    let directory = NSTemporaryDirectory() + "lnrr-bench-\(getpid())"
    var direct = 0.0, proxied = 0.0, recorded = 0.0
    for _ in 0..<2 {
        direct = max(direct, try await throughput(viaProxy: false, recordingDirectory: nil, messages: messages, size: 256))
        proxied = max(proxied, try await throughput(viaProxy: true, recordingDirectory: nil, messages: messages, size: 256))
        recorded = max(recorded, try await throughput(viaProxy: true, recordingDirectory: directory, messages: messages, size: 256))
    }
    results.add(Row(name: "a->b 256 B messages via proxy, recording on", value: recorded, unit: "msg/s",
               baselineName: "direct a->b connection", baseline: direct, target: ">= 0.50"))
    results.add(Row(name: "a->b 256 B messages via proxy, recording off", value: proxied, unit: "msg/s",
               baselineName: "direct a->b connection", baseline: direct, target: "-"))
    // Recording overhead: file bytes per message beyond the message itself.
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    if let file = files.sorted().last,
       let size = (try? FileManager.default.attributesOfItem(atPath: directory + "/" + file)[.size] as? Int) {
        let perMessage = Double(size) / Double(messages) - 256
        print(String(format: "recording overhead: %.1f bytes per 256-byte message (pcapng block, flags, CRC-32, packet id)", perMessage))
    }
    try? FileManager.default.removeItem(atPath: directory)
}

/// `lnrr-bench proxy`.
struct ProxyBenchmark: Benchmark {
    let name = "proxy"

    func run(results: Results) async throws {
        try await proxyBenchmarks(results: results)
    }
}
