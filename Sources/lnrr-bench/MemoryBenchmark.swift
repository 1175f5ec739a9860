// lnrr-bench group "memory" (main.swift runs the groups; Benchmark.swift has the method).
import Foundation
import LNTransport
import LNTransportNIO
import NIOCore
import NIOPosix

// MARK: 5. Proxy memory: RSS of a real `lnrr record` process.

func rssKiB(_ pid: Int32) -> Int {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return 0
}

func memoryBenchmarks() async throws {
    let lnrr = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lnrr").path
    guard FileManager.default.isExecutableFile(atPath: lnrr) else {
        print("memory: build the release lnrr first (tools/bench does)")
        return
    }
    let work = NSTemporaryDirectory() + "lnrr-bench-mem-\(getpid())"
    try FileManager.default.createDirectory(atPath: work + "/keys", withIntermediateDirectories: true)
    let b = NodeSecret.random()
    let dialers = (0..<64).map { _ in NodeSecret.random() }
    try KeyFile.write(b, to: work + "/keys/b.key")
    for (i, a) in dialers.enumerated() { try KeyFile.write(a, to: work + "/keys/a\(i).key") }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let sink = Sink()
    sink.done = group.next().makePromise()
    let bServer = try await listenAsNodeB(group: group, secret: b) { Sink() }
    let listenPort = 20000 + Int(getpid() % 20000)
    let proxy = Process()
    proxy.executableURL = URL(fileURLWithPath: lnrr)
    proxy.arguments = ["record", "--listen", "127.0.0.1:\(listenPort)", "--upstream", "\(b.nodeID.hex)@127.0.0.1:\(bServer.localAddress!.port!)",
                       "--keys", work + "/keys", "--out", work + "/rec", "--log-level", "error"]
    proxy.standardOutput = FileHandle.nullDevice
    try proxy.run()
    try await Task.sleep(nanoseconds: 500_000_000)
    let idle = rssKiB(proxy.processIdentifier)

    func dial(_ a: NodeSecret) async throws -> Channel {
        try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(BOLT8Handler(role: .initiator(remote: b.nodeID), localSecret: a))
                }
            }
            .connect(host: "127.0.0.1", port: listenPort).get()
    }
    var channels: [Channel] = []
    for a in dialers { channels.append(try await dial(a)) }
    let payload = [UInt8](repeating: 1, count: 256)
    for channel in channels { try await channel.writeAndFlush(channel.allocator.buffer(bytes: [0x80, 0x01] + payload)) }
    try await Task.sleep(nanoseconds: 1_000_000_000)
    let sessions64 = rssKiB(proxy.processIdentifier)
    print(String(format: "%-46@ %9.1f MB  (idle proxy %.1f MB)   target <= 64 MB", "proxy RSS, 64 concurrent sessions" as NSString,
                 Double(sessions64) / 1024, Double(idle) / 1024))
    for channel in channels { try? await channel.close() }
    try await Task.sleep(nanoseconds: 500_000_000)

    // One session, 1,000,000 messages: RSS after the first 100,000 and at the end.
    let one = try await dial(dialers[0])
    try await Task.sleep(nanoseconds: 200_000_000)
    var after100k = 0
    for i in 0..<1_000_000 {
        one.write(one.allocator.buffer(bytes: [0x80, 0x01] + payload), promise: nil)
        if i % 1000 == 999 {
            try await one.writeAndFlush(one.allocator.buffer(bytes: [0x80, 0x03]))
        }
        if i == 100_000 { after100k = rssKiB(proxy.processIdentifier) }
    }
    try await one.writeAndFlush(one.allocator.buffer(bytes: [0x80, 0x03]))
    try await Task.sleep(nanoseconds: 1_000_000_000)
    let after1M = rssKiB(proxy.processIdentifier)
    print(String(format: "%-46@ %9.1f MB  (after 100,000: %.1f MB; growth %.1f MB)   target: flat",
                 "proxy RSS after 1,000,000 messages, 1 session" as NSString, Double(after1M) / 1024, Double(after100k) / 1024,
                 Double(after1M - after100k) / 1024))
    try? await one.close()
    proxy.terminate()
    proxy.waitUntilExit()
    try await bServer.close()
    try await group.shutdownGracefully()
    try? FileManager.default.removeItem(atPath: work)
}

/// `lnrr-bench memory`.
struct MemoryBenchmark: Benchmark {
    let name = "memory"

    func run(results: Results) async throws {
        try await memoryBenchmarks()
    }
}
