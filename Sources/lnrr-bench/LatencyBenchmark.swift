// lnrr-bench group "latency" (main.swift runs the groups; Benchmark.swift has the method).
import Foundation
import LNProxy
import LNTransport
import LNTransportNIO
import Logging
import NIOCore
import NIOPosix

// MARK: 4. Added one-way latency: a paced stream with timestamps, direct and through the proxy.

final class LatencySink: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var samples: [Double] = []
    var expected = Int.max
    let done: EventLoopPromise<Void>
    init(_ done: EventLoopPromise<Void>) { self.done = done }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if let sent = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt64.self) {
            samples.append(now() - Double(bitPattern: sent))
        }
        if samples.count == expected { done.succeed(()) }
    }
}

func latencies(viaProxy: Bool, rate: Int, count: Int) async throws -> [Double] {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let a = NodeSecret.random(), b = NodeSecret.random()
    let sink = LatencySink(group.next().makePromise())
    sink.expected = count
    let bServer = try await listenAsNodeB(group: group, secret: b) { sink }
    var port = bServer.localAddress!.port!
    var proxy: ProxyServer?
    let directory = NSTemporaryDirectory() + "lnrr-bench-lat-\(getpid())"
    if viaProxy {
        let started = try await startBenchProxy(group: group, a: a, b: b, upstreamPort: port, recordingDirectory: directory)
        (proxy, port) = (started.0, started.1)
    }
    let client = try await ClientBootstrap(group: group)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(BOLT8Handler(role: .initiator(remote: b.nodeID), localSecret: a))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    try await Task.sleep(nanoseconds: 200_000_000)  // handshakes done
    // Send in 1 ms ticks: rate/1000 messages per tick, each stamped when written.
    let perTick = max(1, rate / 1000)
    try await client.eventLoop.submit {
        var sent = 0
        client.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { task in
            for _ in 0..<perTick where sent < count {
                var buffer = client.allocator.buffer(capacity: 256)
                buffer.writeInteger(UInt16(32769))
                buffer.writeInteger(now().bitPattern)
                buffer.writeRepeatingByte(0, count: 246)
                client.write(buffer, promise: nil)
                sent += 1
            }
            client.flush()
            if sent >= count { task.cancel() }
        }
    }.get()
    try await sink.done.futureResult.get()
    try await client.close()
    if let proxy { await proxy.shutdown() }
    try await bServer.close()
    try await group.shutdownGracefully()
    try? FileManager.default.removeItem(atPath: directory)
    return sink.samples.sorted()
}

func percentile(_ sorted: [Double], _ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }

func latencyBenchmarks(saturationRate: Double) async throws {
    for (label, rate, count) in [("1,000 msg/s", 1000, 5000), ("near saturation", Int(saturationRate * 0.8), Int(saturationRate * 2))] {
        let direct = try await latencies(viaProxy: false, rate: rate, count: count)
        let proxied = try await latencies(viaProxy: true, rate: rate, count: count)
        for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
            let added = (percentile(proxied, p) - percentile(direct, p)) * 1e6
            print(String(format: "%-46@ %9.0f us  (through proxy %.0f us, direct %.0f us)%@",
                         "added one-way latency \(name), \(label)" as NSString, added,
                         percentile(proxied, p) * 1e6, percentile(direct, p) * 1e6,
                         (rate == 1000 && name == "p99" ? "   target <= 200 us" : "") as NSString))
        }
    }
}

/// `lnrr-bench latency`.
struct LatencyBenchmark: Benchmark {
    let name = "latency"

    func run(results: Results) async throws {
        // Near saturation means 80 % of the proxy's recorded rate when the proxy group ran first.
        let saturation = results.rows.first(where: { $0.name.hasPrefix("a->b 256 B messages via proxy, recording on") })?.value ?? 250_000
        try await latencyBenchmarks(saturationRate: saturation)
    }
}
