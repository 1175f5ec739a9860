// lnrr-bench: lnrr's performance, each figure beside a baseline measured in the same run, because
// these machines are noisy and only ratios compare across runs. Run through tools/bench (release).
import CSecp256k1
import CSodium
import Foundation
import LNProxy
import LNTransport
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

func throughput(viaProxy: Bool, recordingDirectory: String?, messages: Int, size: Int) async throws -> Double {
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
        proxy = try ProxyServer(configuration: ProxyConfiguration(routes: [route], recordingDirectory: recordingDirectory, lnrrVersion: "bench"),
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
                client.eventLoop.scheduleTask(in: .microseconds(50)) { pump() }
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

let only = CommandLine.arguments.dropFirst().first
print("lnrr-bench: figure, baseline measured in the same run, ratio (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
if only == nil || only == "frames" { try frameBenchmarks() }
if only == nil || only == "handshake" { try handshakeBenchmark() }
if only == nil || only == "proxy" { try await proxyBenchmarks() }
