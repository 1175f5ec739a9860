// MARK: soak: per-session cost of a real `lnrr record` process (`tools/bench soak`).
//
// 1,000 concurrent sessions, then churn (10,000 sessions opened and closed, a few dozen at a time),
// through a real `lnrr record` started under a soft fd limit of 1,024 (the default of a fresh shell),
// between in-process BOLT 8 peers on loopback. RSS, open fds and threads of the lnrr process are
// read from /proc before, during and after, and reported as ratios to the idle process.
import Foundation
import LNProxy
import LNTransport
import LNTransportNIO
import NIOCore
import NIOPosix

/// RSS, open file descriptors and threads of one process, from /proc.
struct ProcessFigures {
    var rssKiB = 0
    var fds = 0
    var threads = 0

    init(pid: Int32) {
        if let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let value = Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
                if line.hasPrefix("VmRSS:") { rssKiB = value }
                if line.hasPrefix("Threads:") { threads = value }
            }
        }
        fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    }

    var rssMiB: Double { Double(rssKiB) / 1024 }

    func line(_ label: String, idle: ProcessFigures) -> String {
        String(format: "%-40@ RSS %7.1f MiB (x%.2f)   fds %5d (x%.2f)   threads %3d (x%.2f)", label as NSString,
               rssMiB, rssMiB / max(idle.rssMiB, 0.001), fds, Double(fds) / Double(max(idle.fds, 1)),
               threads, Double(threads) / Double(max(idle.threads, 1)))
    }
}

/// Counts, across every channel, the connections b accepted and the messages it received.
final class SoakCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var _messages = 0
    var messages: Int { lock.lock(); defer { lock.unlock() }; return _messages }
    func add() { lock.lock(); _messages += 1; lock.unlock() }
}

/// b's side of a soak session: counts each message.
final class SoakSink: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let counter: SoakCounter
    init(_ counter: SoakCounter) { self.counter = counter }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { counter.add() }
}

/// a's side of a soak session: sends one custom message as soon as the handshake is done.
final class SoakGreeter: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case BOLT8Event.handshakeCompleted? = event as? BOLT8Event else { return }
        var buffer = context.channel.allocator.buffer(capacity: 34)
        buffer.writeInteger(UInt16(32769))
        buffer.writeRepeatingByte(0x5a, count: 32)
        context.writeAndFlush(NIOAny(buffer), promise: nil)
    }
}

func soakBenchmarks() async throws {
    let lnrr = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lnrr").path
    guard FileManager.default.isExecutableFile(atPath: lnrr) else {
        say("soak: build the release lnrr first (tools/bench does)")
        return
    }
    let environment = ProcessInfo.processInfo.environment
    let concurrent = Int(environment["LNRR_SOAK_CONCURRENT"] ?? "") ?? 1000
    let churn = Int(environment["LNRR_SOAK_CHURN"] ?? "") ?? 10_000
    let proxyFdLimit = Int(environment["LNRR_SOAK_NOFILE"] ?? "") ?? 1024
    // This process holds both ends of every session (a's and b's), so it needs more than lnrr.
    var limit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)

    for recording in [true, false] {
        try? await soak(lnrr: lnrr, recording: recording, concurrent: recording ? concurrent : 0, churn: churn, proxyFdLimit: proxyFdLimit)
    }
}

private func soak(lnrr: String, recording: Bool, concurrent: Int, churn: Int, proxyFdLimit: Int) async throws {
    let environment = ProcessInfo.processInfo.environment
    let work = NSTemporaryDirectory() + "lnrr-bench-soak-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: work) }
    try FileManager.default.createDirectory(atPath: work + "/keys", withIntermediateDirectories: true)
    let a = NodeSecret.random(), b = NodeSecret.random()
    try KeyFile.write(a, to: work + "/keys/a.key")
    try KeyFile.write(b, to: work + "/keys/b.key")

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let counter = SoakCounter()
    let bServer = try await listenAsNodeB(group: group, secret: b, backlog: 1024) { SoakSink(counter) }
    // A port free now: bound and released by the kernel's choice.
    let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
    let listenPort = probe.localAddress!.port!
    try await probe.close()
    let proxy = Process()
    // Under the soft fd limit of a fresh shell, whatever this process was given.
    proxy.executableURL = URL(fileURLWithPath: "/bin/sh")
    var arguments = ["-c", "ulimit -Sn \(proxyFdLimit) && exec \"$0\" \"$@\"", lnrr,
                     "record", "--listen", "127.0.0.1:\(listenPort)", "--upstream", "\(b.nodeID.hex)@127.0.0.1:\(bServer.localAddress!.port!)",
                     "--keys", work + "/keys", "--log-level", "error"]
    arguments += recording ? ["--out", work + "/rec", "--sync", "batch"] : ["--no-recording"]
    proxy.arguments = arguments
    proxy.standardOutput = FileHandle.nullDevice
    // Sessions refused for want of fds each log a line: kept in a file, not on the terminal.
    proxy.standardError = FileHandle(forWritingAtPath: "/dev/null")
    if let log = environment["LNRR_SOAK_LOG"] {
        FileManager.default.createFile(atPath: log, contents: nil)
        proxy.standardError = FileHandle(forWritingAtPath: log)
    }
    try proxy.run()
    defer {
        if proxy.isRunning {
            proxy.terminate()
            proxy.waitUntilExit()
        }
    }
    /// Stops the run when lnrr is gone (a crash is a finding, not something to wait out).
    func alive() throws {
        guard proxy.isRunning else {
            say("  lnrr exited (status \(proxy.terminationStatus), \(proxy.terminationReason == .uncaughtSignal ? "signal" : "exit")): stopping this run")
            throw CancellationError()
        }
    }
    try await Task.sleep(nanoseconds: 700_000_000)
    let pid = proxy.processIdentifier
    try alive()
    let idle = ProcessFigures(pid: pid)
    say("soak, recording \(recording ? "on (--sync batch)" : "off"), lnrr under ulimit -Sn \(proxyFdLimit)")
    say(idle.line("  idle", idle: idle))

    func dial() async -> Channel? {
        guard proxy.isRunning else { return nil }
        return try? await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .initiator(remote: b.nodeID), localSecret: a), SoakGreeter()])
                }
            }
            .connect(host: "127.0.0.1", port: listenPort).get()
    }
    /// Waits until lnrr's fds are back near idle (its sessions are gone), at most `seconds`.
    func settle(seconds: Double) async {
        let deadline = now() + seconds
        while ProcessFigures(pid: pid).fds > idle.fds + 2 && now() < deadline { try? await Task.sleep(nanoseconds: 50_000_000) }
        try? await Task.sleep(nanoseconds: 500_000_000)
    }

    // 1. Concurrent sessions, all open at once.
    if concurrent > 0 {
        var channels: [Channel] = []
        for _ in 0..<concurrent {
            if let channel = await dial() { channels.append(channel) }
        }
        let served = await waitForMessages(counter, concurrent, seconds: 120)
        try alive()
        let during = ProcessFigures(pid: pid)
        say(during.line("  \(concurrent) concurrent sessions (\(served) served)", idle: idle))
        for channel in channels { try? await channel.close() }
        await settle(seconds: 60)
        say(ProcessFigures(pid: pid).line("  after they closed", idle: idle))
    }

    // 2. Churn: sessions opened and closed, `wave` at a time. The first 500 are the warm-up.
    let wave = 50
    var done = 0
    var warm: ProcessFigures?
    var middle: ProcessFigures?
    let base = counter.messages
    let start = now()
    while done < churn + 500 {
        var channels: [Channel] = []
        for _ in 0..<wave { if let channel = await dial() { channels.append(channel) } }
        done += wave
        _ = await waitForMessages(counter, base + done, seconds: 30)
        for channel in channels { try? await channel.close() }
        try alive()
        if done == 500 {
            await settle(seconds: 30)
            warm = ProcessFigures(pid: pid)
            say(warm!.line("  after 500 sessions (warm-up)", idle: idle))
        }
        if churn > 0 && done == 500 + churn / 2 { middle = ProcessFigures(pid: pid) }
    }
    let elapsed = now() - start
    if let middle { say(middle.line("  during churn (\(churn / 2) sessions in)", idle: idle)) }
    await settle(seconds: 60)
    try? await Task.sleep(nanoseconds: 2_000_000_000)
    let after = ProcessFigures(pid: pid)
    let served = counter.messages - base
    say(after.line("  after \(churn) more sessions", idle: idle))
    if let warm {
        say(String(format: "  churn: %d of %d sessions served, %.0f sessions/s; RSS %+.1f MiB since warm-up (target within 5 MiB), threads %+d, fds %+d",
                     served, churn + 500, Double(served) / elapsed, after.rssMiB - warm.rssMiB, after.threads - warm.threads, after.fds - warm.fds))
    }
    proxy.terminate()
    proxy.waitUntilExit()
    try await bServer.close()
    try await group.shutdownGracefully()
}

/// Prints a line at once (stdout may be a file: the soak takes minutes).
private func say(_ line: String) {
    print(line)
    fflush(stdout)
}

/// Waits until `counter` reaches `target`, or `seconds` pass; returns the count.
private func waitForMessages(_ counter: SoakCounter, _ target: Int, seconds: Double) async -> Int {
    let deadline = now() + seconds
    while counter.messages < target && now() < deadline { try? await Task.sleep(nanoseconds: 20_000_000) }
    return counter.messages
}

/// `lnrr-bench soak`: minutes long, so only when named (`tools/bench soak`).
struct SoakBenchmark: Benchmark {
    let name = "soak"
    var runsWithAll: Bool { false }

    func run(results: Results) async throws {
        try await soakBenchmarks()
    }
}
