import LNTransport
import LNTransportNIO
import NIOCore
import NIOPosix
import Testing

/// Collects what reaches the end of a pipeline.
///
/// `@unchecked Sendable` because the bootstraps' initializer closures are `@Sendable` and capture
/// it; it is safe because its fields are only touched on its channel's event loop (by the pipeline,
/// and by the tests through `submit` on that loop after the channel closed), and the promises it
/// completes are themselves thread-safe.
final class Collector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    let expected: Int
    let done: EventLoopPromise<[[UInt8]]>
    var messages: [[UInt8]] = []
    var events: [BOLT8Event] = []
    var errors: [Error] = []
    let handshake: EventLoopPromise<NodeID>

    init(expected: Int, eventLoop: EventLoop) {
        self.expected = expected
        self.done = eventLoop.makePromise()
        self.handshake = eventLoop.makePromise()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        messages.append(Array(unwrapInboundIn(data).readableBytesView))
        if messages.count == expected { done.succeed(messages) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? BOLT8Event, case .handshakeCompleted(let remote) = event {
            events.append(event)
            handshake.succeed(remote)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        errors.append(error)
        handshake.fail(error)
        done.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        struct Closed: Error {}
        handshake.fail(Closed())
        done.fail(Closed())
    }
}

@Suite("BOLT8Handler over loopback TCP")
struct BOLT8HandlerTests {
    let alice = NodeSecret.random()
    let bob = NodeSecret.random()

    func messages(count: Int, seed: UInt8) -> [[UInt8]] {
        (0..<count).map { i in
            let size = [2, 65535, 100, 3000, 18][i % 5]
            return [0x80, seed] + (0..<(size - 2)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
        }
    }

    @Test("messages flow both ways, 65535-byte ones included, with rotations; writes before the handshake are kept in order")
    func exchange() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { Task { try? await group.shutdownGracefully() } }
        let toBob = messages(count: 1100, seed: 1)
        let toAlice = messages(count: 1100, seed: 2)
        let bobCollector = Collector(expected: toBob.count, eventLoop: group.next())
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .responder, localSecret: bob), bobCollector])
                    // Bob writes immediately, before the handshake has even started.
                    for message in toAlice { channel.write(channel.allocator.buffer(bytes: message), promise: nil) }
                    channel.flush()
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let aliceCollector = Collector(expected: toAlice.count, eventLoop: group.next())
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .initiator(remote: bob.nodeID), localSecret: alice), aliceCollector])
                }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        for message in toBob { client.write(client.allocator.buffer(bytes: message), promise: nil) }
        client.flush()

        #expect(try await aliceCollector.handshake.futureResult.get() == bob.nodeID)
        #expect(try await bobCollector.handshake.futureResult.get() == alice.nodeID)
        #expect(try await bobCollector.done.futureResult.get() == toBob)
        #expect(try await aliceCollector.done.futureResult.get() == toAlice)
        try await client.close()
        try await server.close()
    }

    @Test("dialing the wrong node id fails the handshake with a typed error on both ends")
    func wrongNodeID() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await group.shutdownGracefully() } }
        let carol = NodeSecret.random()
        let bobCollector = Collector(expected: 1, eventLoop: group.next())
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .responder, localSecret: bob), bobCollector])
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let aliceCollector = Collector(expected: 1, eventLoop: group.next())
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .initiator(remote: carol.nodeID), localSecret: alice), aliceCollector])
                }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        await #expect(throws: (any Error).self) { try await aliceCollector.handshake.futureResult.get() }
        await #expect(throws: (any Error).self) { try await bobCollector.handshake.futureResult.get() }
        try await client.closeFuture.get()
        let bobErrors = try await group.next().submit { bobCollector.errors }.get()
        #expect(bobErrors.contains { ($0 as? TransportError) == .badActMAC(act: 1) })
        let aliceErrors = try await group.next().submit { aliceCollector.errors }.get()
        // Bob hangs up without answering: Alice sees the stream end during act two.
        #expect(aliceErrors.contains { ($0 as? TransportError) == .truncated(expected: 50, got: 0, during: "act two") })
        try await server.close()
    }
}
