// lnrr-bench: lnrr's performance, each figure beside a baseline measured in the same run, because
// these machines are noisy and only ratios compare across runs. Run through tools/bench (release).
import CSecp256k1
import CSodium
import Foundation
import LNProxy
import LNTransport
import LNRecording
import LNTransportNIO
import Logging
import NIOCore
import NIOPosix

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs `body` repeatedly for about `seconds`, returns operations per second (best of 3 rounds).
func rate(seconds: Double = 1.0, batch: Int, _ body: () -> Void) -> Double {
    var best = 0.0
    for _ in 0..<3 {
        var operations = 0
        let start = now()
        var elapsed = 0.0
        while elapsed < seconds / 3 {
            for _ in 0..<batch { body() }
            operations += batch
            elapsed = now() - start
        }
        best = max(best, Double(operations) / elapsed)
    }
    return best
}

struct Row {
    var name: String
    var value: Double
    var unit: String
    var baselineName: String
    var baseline: Double
    var target: String
}

var rows: [Row] = []
func report(_ row: Row) {
    rows.append(row)
    let ratio = row.baseline > 0 ? row.value / row.baseline : 0
    print(String(format: "%-46@ %12.0f %-6@  %-36@ %12.0f   ratio %.2f   target %@",
                 row.name as NSString, row.value, row.unit as NSString, row.baselineName as NSString, row.baseline, ratio, row.target as NSString))
    fflush(stdout)
}

// MARK: 1. Frame encrypt + decrypt vs raw libsodium doing the same two AEAD operations each way.

func frameBenchmarks() throws {
    _ = sodium_init()
    let alice = try NodeSecret(hex: String(repeating: "11", count: 32))
    let bob = try NodeSecret(hex: String(repeating: "21", count: 32))
    var initiator = Handshake(initiator: alice, remote: bob.nodeID)
    var responder = Handshake(responder: bob)
    let actTwo = try responder.readActOne(initiator.actOne())
    let (actThree, keysA) = try initiator.readActTwo(actTwo)
    let keysB = try responder.readActThree(actThree)

    for size in [32, 256, 1024, 65535] {
        let message = [UInt8](repeating: 0x5a, count: size)
        var frame = [UInt8](repeating: 0, count: size + MessageEncryptor.overhead)
        var encryptor = MessageEncryptor(keys: keysA)
        var decryptor = MessageDecryptor(keys: keysB)
        let batch = max(1, 4_000_000 / (size + 64))
        let lnrrRate = rate(batch: batch) {
            message.withUnsafeBytes { m in
                frame.withUnsafeMutableBytes { f in
                    _ = try! encryptor.seal(m, into: f)
                    _ = try! decryptor.openLength(UnsafeMutableRawBufferPointer(rebasing: f[0..<18]))
                    try! decryptor.openBody(UnsafeMutableRawBufferPointer(rebasing: f[18...]))
                }
            }
        }
        // The limit: libsodium's ChaCha20-Poly1305 on the same bytes, no lnrr code around it.
        let key = [UInt8](repeating: 7, count: 32)
        var nonce = [UInt8](repeating: 0, count: 12)
        var scratch = [UInt8](repeating: 0, count: size + 16)
        var lengthBox = [UInt8](repeating: 0, count: 18)
        let two: [UInt8] = [0, 0]
        let rawRate = rate(batch: batch) {
            nonce[4] &+= 1
            crypto_aead_chacha20poly1305_ietf_encrypt(&lengthBox, nil, two, 2, nil, 0, nil, nonce, key)
            crypto_aead_chacha20poly1305_ietf_encrypt(&scratch, nil, message, UInt64(size), nil, 0, nil, nonce, key)
            crypto_aead_chacha20poly1305_ietf_decrypt(&lengthBox, nil, nil, lengthBox, 18, nil, 0, nonce, key)
            crypto_aead_chacha20poly1305_ietf_decrypt(&scratch, nil, nil, scratch, UInt64(size + 16), nil, 0, nonce, key)
        }
        report(Row(name: "frame encrypt+decrypt, \(size) B", value: lnrrRate, unit: "msg/s",
                   baselineName: "raw libsodium, same 4 AEAD ops", baseline: rawRate, target: ">= 0.90"))
    }
}

// MARK: 2. Handshakes vs the elliptic-curve work they cannot avoid.

func handshakeBenchmark() throws {
    let alice = try NodeSecret(hex: String(repeating: "11", count: 32))
    let bob = try NodeSecret(hex: String(repeating: "21", count: 32))
    let lnrrRate = rate(batch: 50) {
        var initiator = Handshake(initiator: alice, remote: bob.nodeID)
        var responder = Handshake(responder: bob)
        let actTwo = try! responder.readActOne(initiator.actOne())
        let (actThree, _) = try! initiator.readActTwo(actTwo)
        _ = try! responder.readActThree(actThree)
    }
    // Per handshake: two ephemeral keys (random + pubkey), six ECDHs, three point parses.
    let context = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY))!
    var seckey = [UInt8](repeating: 0x42, count: 32)
    var pubkey = secp256k1_pubkey()
    _ = secp256k1_ec_pubkey_create(context, &pubkey, seckey)
    var serialized = [UInt8](repeating: 0, count: 33)
    var length = 33
    _ = secp256k1_ec_pubkey_serialize(context, &serialized, &length, &pubkey, UInt32(SECP256K1_EC_COMPRESSED))
    var out = [UInt8](repeating: 0, count: 32)
    let ecRate = rate(batch: 50) {
        for _ in 0..<2 {
            randombytes_buf(&seckey, 32)
            _ = secp256k1_ec_seckey_verify(context, seckey)
            _ = secp256k1_ec_pubkey_create(context, &pubkey, seckey)
            _ = secp256k1_ec_pubkey_serialize(context, &serialized, &length, &pubkey, UInt32(SECP256K1_EC_COMPRESSED))
        }
        for _ in 0..<3 { _ = secp256k1_ec_pubkey_parse(context, &pubkey, serialized, 33) }
        for _ in 0..<6 { _ = secp256k1_ecdh(context, &out, &pubkey, seckey, nil, nil) }
    }
    report(Row(name: "handshakes (both roles, one process)", value: lnrrRate, unit: "hs/s",
               baselineName: "EC work alone (2 keygen, 6 ECDH)", baseline: ecRate, target: ">= 0.80"))
}

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
    let bServer = try await ServerBootstrap(group: group)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .responder, localSecret: b), sink])
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    var port = bServer.localAddress!.port!
    var proxy: ProxyServer?
    if viaProxy {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let route = ProxyRoute(listen: try HostPort(parsing: "127.0.0.1:0"), upstream: PeerAddress(nodeID: b.nodeID, host: "127.0.0.1", port: port))
        var configuration = ProxyConfiguration(routes: [route], recordingDirectory: recordingDirectory, lnrrVersion: "bench")
        configuration.messageHook = hook
        proxy = try ProxyServer(configuration: configuration,
                                keyring: Keyring([a, b]), proxyIdentity: NodeSecret.random(), group: group, logger: logger)
        port = try await proxy!.start()[0].port!
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

func proxyBenchmarks() async throws {
    let messages = 300_000
    let directory = NSTemporaryDirectory() + "lnrr-bench-\(getpid())"
    var direct = 0.0, proxied = 0.0, recorded = 0.0
    for _ in 0..<2 {
        direct = max(direct, try await throughput(viaProxy: false, recordingDirectory: nil, messages: messages, size: 256))
        proxied = max(proxied, try await throughput(viaProxy: true, recordingDirectory: nil, messages: messages, size: 256))
        recorded = max(recorded, try await throughput(viaProxy: true, recordingDirectory: directory, messages: messages, size: 256))
    }
    report(Row(name: "a->b 256 B messages via proxy, recording on", value: recorded, unit: "msg/s",
               baselineName: "direct a->b connection", baseline: direct, target: ">= 0.50"))
    report(Row(name: "a->b 256 B messages via proxy, recording off", value: proxied, unit: "msg/s",
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
    let bServer = try await ServerBootstrap(group: group)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .responder, localSecret: b), sink])
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    var port = bServer.localAddress!.port!
    var proxy: ProxyServer?
    let directory = NSTemporaryDirectory() + "lnrr-bench-lat-\(getpid())"
    if viaProxy {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let route = ProxyRoute(listen: try HostPort(parsing: "127.0.0.1:0"), upstream: PeerAddress(nodeID: b.nodeID, host: "127.0.0.1", port: port))
        proxy = try ProxyServer(configuration: ProxyConfiguration(routes: [route], recordingDirectory: directory, lnrrVersion: "bench"),
                                keyring: Keyring([a, b]), proxyIdentity: NodeSecret.random(), group: group, logger: logger)
        port = try await proxy!.start()[0].port!
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
    let bServer = try await ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .responder, localSecret: b), Sink()])
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
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

// MARK: 6. Reading a 1,000,000-message recording.

func readerBenchmarks() throws {
    let directory = NSTemporaryDirectory() + "lnrr-bench-read-\(getpid())"
    let metadata = SessionMetadata(lnrrVersion: "bench", sessionID: 1, startedNanos: 1_764_000_000_000_000_000, nodeA: "02" + String(repeating: "a", count: 64),
                                   nodeB: "03" + String(repeating: "b", count: 64), listen: "x", upstream: "y", transparent: true, syncMode: .none)
    let writer = try RecordingWriter(directory: directory, metadata: metadata, sync: .none)
    var message = [UInt8](repeating: 7, count: 256)
    message[0] = 0x80; message[1] = 0x01
    let count = 1_000_000
    for i in 0..<count { writer.message(message, direction: i % 2 == 0 ? .aToB : .bToA, timestampNanos: UInt64(i) * 1000) }
    try writer.close()
    let path = writer.path
    let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0

    // The limit: reading the file's bytes, nothing else.
    var start = now()
    let fd = open(path, O_RDONLY)
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while read(fd, &buffer, buffer.count) > 0 {}
    close(fd)
    let rawRate = Double(count) / (now() - start)

    start = now()
    var seen = 0
    _ = try RecordingReader.scan(path: path, onMessage: { _ in seen += 1 })
    let scanRate = Double(count) / (now() - start)
    report(Row(name: "read + checksum a 1,000,000-message recording", value: scanRate, unit: "msg/s",
               baselineName: "read(2) of the same file", baseline: rawRate, target: ">= 1,000,000 msg/s"))

    let lnrr = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lnrr").path
    for (name, args) in [("lnrr list", ["list", directory]), ("lnrr show --json", ["show", "--json", path])] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: lnrr)
        process.arguments = args
        process.standardOutput = FileHandle.nullDevice
        start = now()
        try process.run()
        process.waitUntilExit()
        let rate = Double(count) / (now() - start)
        report(Row(name: "\(name), 1,000,000 messages (\(size / 1_000_000) MB)", value: rate, unit: "msg/s",
                   baselineName: "reader alone (scan)", baseline: scanRate, target: name == "lnrr list" ? ">= 1,000,000 msg/s" : "formatting-bound"))
    }
    try? FileManager.default.removeItem(atPath: directory)
}

// MARK: 7. Hooks: a pyln-client plugin on custommsg behind the proxy vs the same plugin fed from a pipe.

/// The Python that has pyln-client: the test venv when there is one.
func benchPython() -> String {
    FileManager.default.isExecutableFile(atPath: ".venv/bin/python") ? ".venv/bin/python" : "python3"
}

/// The plugin alone: `getmanifest`, `init`, then `count` custommsg calls written into its stdin as
/// fast as it takes them (the calls lnrr would make), timed until the last answer is read.
func pluginAloneRate(plugin: String, count: Int, size: Int) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", "exec " + plugin]
    var environment = ProcessInfo.processInfo.environment
    environment["LIGHTNINGD_PLUGIN"] = "1"
    process.environment = environment
    let input = Pipe(), output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    try process.run()
    let peer = NodeSecret.random().nodeID.hex
    let payload = "8001" + String(repeating: "33", count: size - 2)
    var setup = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getmanifest\",\"params\":{}}\n\n"
    setup += "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"init\",\"params\":{\"options\":{},\"configuration\":{\"lightning-dir\":\"/tmp\",\"rpc-file\":\"none\",\"startup\":true}}}\n\n"
    input.fileHandleForWriting.write(Data(setup.utf8))
    let reader = output.fileHandleForReading
    // Counts answers: each ends with a blank line.
    func readAnswers(_ wanted: Int) {
        var seen = 0
        var last: UInt8 = 0
        while seen < wanted {
            let chunk = reader.availableData
            if chunk.isEmpty { return }
            for byte in chunk {
                if byte == 0x0A && last == 0x0A { seen += 1 }
                last = byte
            }
        }
    }
    readAnswers(2)
    var calls = Data()
    for id in 0..<count {
        calls.append(Data("{\"jsonrpc\":\"2.0\",\"id\":\(id + 3),\"method\":\"custommsg\",\"params\":{\"peer_id\":\"\(peer)\",\"payload\":\"\(payload)\"}}\n\n".utf8))
    }
    let start = now()
    let allCalls = calls
    let writer = Thread { input.fileHandleForWriting.write(allCalls) }
    writer.start()
    readAnswers(count)
    let elapsed = now() - start
    try? input.fileHandleForWriting.close()
    process.waitUntilExit()
    return Double(count) / elapsed
}

/// The plugin host without the proxy: `count` questions asked at once, timed until the last answer.
func askRate(_ host: PluginHost, count: Int, size: Int) async throws -> Double {
    let message = [0x80, 0x01] + [UInt8](repeating: 0x33, count: size - 2)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let done = group.next().makePromise(of: Void.self)
    final class Counter: @unchecked Sendable { var n = 0 }
    let counter = Counter()
    let loop = done.futureResult.eventLoop
    let start = now()
    for i in 0..<count {
        host.ask(HookQuery(session: 1, direction: .aToB, peerID: nil, phase: "normal", message: message)) { _ in
            loop.execute {
                counter.n += 1
                if counter.n == count { done.succeed(()) }
            }
        }
        if i % 1024 == 1023 { try await Task.sleep(nanoseconds: 0) }
    }
    try await done.futureResult.get()
    let elapsed = now() - start
    try await group.shutdownGracefully()
    return Double(count) / elapsed
}

func hookBenchmarks() async throws {
    let python = benchPython()
    let plugin = "\(python) tools/python/examples/passthrough.py"
    let count = 20_000, size = 256
    var alone = 0.0, proxied = 0.0, hostOnly = 0.0
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    for _ in 0..<2 {
        alone = max(alone, try pluginAloneRate(plugin: plugin, count: count, size: size))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let host = try await PluginHost.start(PluginHost.Configuration(commands: [plugin], controlSocket: nil, hookTimeout: .seconds(30), lnrrVersion: "bench"),
                                              group: group, logger: logger)
        // The sender retries every millisecond when the proxy holds it back: polling faster would
        // take CPU from the plugin being measured (these machines have 2 cores).
        proxied = max(proxied, try await throughput(viaProxy: true, recordingDirectory: nil, messages: count, size: size, hook: host,
                                                    retry: .milliseconds(1)))
        hostOnly = max(hostOnly, try await askRate(host, count: count, size: size))
        await host.stop()
        try await group.shutdownGracefully()
    }
    report(Row(name: "a->b custom messages via proxy + pyln plugin", value: proxied, unit: "msg/s",
               baselineName: "the plugin alone, fed from a pipe", baseline: alone, target: ">= 0.70"))
    report(Row(name: "PluginHost.ask alone (no sockets, no session)", value: hostOnly, unit: "msg/s",
               baselineName: "the plugin alone, fed from a pipe", baseline: alone, target: "-"))
    // Today's slow path: one process per message.
    let oneShot = OneShotHook(command: "\(python) -c 'import sys, json; sys.stdin.read(); print(json.dumps({\"result\": \"continue\"}))'", timeout: 30)
    let oneShotRate = try await throughput(viaProxy: true, recordingDirectory: nil, messages: 20, size: size, hook: oneShot)
    report(Row(name: "a->b custom messages via proxy + --custommsg-hook", value: oneShotRate, unit: "msg/s",
               baselineName: "via proxy + pyln plugin (above)", baseline: proxied, target: "- (the slow path)"))
}

let only = CommandLine.arguments.dropFirst().first
print("lnrr-bench: figure, baseline measured in the same run, ratio (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
if only == nil || only == "frames" { try frameBenchmarks() }
if only == nil || only == "handshake" { try handshakeBenchmark() }
if only == nil || only == "proxy" { try await proxyBenchmarks() }
if only == nil || only == "latency" {
    let saturation = rows.first(where: { $0.name.hasPrefix("a->b 256 B messages via proxy, recording on") })?.value ?? 250_000
    try await latencyBenchmarks(saturationRate: saturation)
}
if only == nil || only == "memory" { try await memoryBenchmarks() }
if only == nil || only == "read" { try readerBenchmarks() }
if only == nil || only == "hook" { try await hookBenchmarks() }
// Minutes long: only when named (`tools/bench soak`).
if only == "soak" { try await soakBenchmarks() }
