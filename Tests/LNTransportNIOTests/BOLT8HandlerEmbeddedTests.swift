import LNTransport
@testable import LNTransportNIO
import NIOCore
import NIOEmbedded
import Testing

/// BOLT 8 Appendix A's keys and bytes: the independent truth the handler is checked against.
enum Vectors {
    static let initiatorSecret = try! NodeSecret(hex: String(repeating: "11", count: 32))
    static let initiatorEphemeral = try! NodeSecret(hex: String(repeating: "12", count: 32))
    static let responderSecret = try! NodeSecret(hex: String(repeating: "21", count: 32))
    static let responderEphemeral = try! NodeSecret(hex: String(repeating: "22", count: 32))
    static let initiatorID = try! NodeID(hex: "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa")
    static let responderID = try! NodeID(hex: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7")
    static let actOne = bytes("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a")
    static let actTwo = bytes("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae")
    static let actThree = bytes("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba")
    /// The initiator's first two frames of "transport-message test", each carrying "hello".
    static let hello0 = bytes("cf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95")
    static let hello1 = bytes("72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1")
    static let hello = Array("hello".utf8)

    static func bytes(_ hex: String) -> [UInt8] { HexString.decode(hex)! }
}

/// Records what reaches the end of the pipeline, and keeps errors from reaching EmbeddedChannel.
final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    var messages: [[UInt8]] = []
    /// Where each message's bytes lie in memory.
    var addresses: [Int] = []
    var events: [BOLT8Event] = []
    var errors: [TransportError] = []
    var otherErrors: [any Error] = []
    var inactive = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        messages.append(Array(buffer.readableBytesView))
        addresses.append(buffer.withUnsafeReadableBytes { Int(bitPattern: $0.baseAddress) })
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? BOLT8Event { events.append(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? TransportError { errors.append(error) } else { otherErrors.append(error) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        inactive = true
    }
}

/// The far end, as an I/O-free machine with the vectors' keys (itself checked against Appendix A
/// in LNTransportTests), for reading what the handler writes.
struct FarEnd {
    var machine: BOLT8Machine
    var pending: [UInt8] = []

    /// The vectors' initiator after act two, ready to read the responder's frames.
    static func vectorInitiator() -> FarEnd {
        var far = FarEnd(machine: BOLT8Machine(role: .initiator(remote: Vectors.responderID), localSecret: Vectors.initiatorSecret,
                                               ephemeral: Vectors.initiatorEphemeral))
        _ = far.machine.start()
        _ = far.messages(Vectors.actTwo)
        return far
    }

    mutating func messages(_ bytes: [UInt8]) -> [[UInt8]] {
        pending += bytes
        var actions: [BOLT8Machine.Action] = []
        var messages: [[UInt8]] = []
        let consumed = pending.withUnsafeMutableBytes { buffer in
            let consumed = machine.receive(buffer, actions: &actions)
            for case .deliver(let range) in actions { messages.append(Array(buffer[range])) }
            return consumed
        }
        pending.removeFirst(consumed)
        return messages
    }

    mutating func seal(_ message: [UInt8]) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: message.count + MessageEncryptor.overhead)
        message.withUnsafeBytes { m in frame.withUnsafeMutableBytes { f in _ = try! machine.seal(m, into: f) } }
        return frame
    }
}

@Suite("BOLT8Handler on EmbeddedChannel")
struct BOLT8HandlerEmbeddedTests {
    typealias V = Vectors

    /// A connected channel running the vectors' responder, and what reaches the end of its pipeline.
    func responder() throws -> (EmbeddedChannel, Recorder) {
        let recorder = Recorder()
        let channel = EmbeddedChannel(handlers: [
            BOLT8Handler(role: .responder, localSecret: V.responderSecret, ephemeral: V.responderEphemeral), recorder,
        ])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9735)).wait()
        return (channel, recorder)
    }

    func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    func outbound(_ channel: EmbeddedChannel) throws -> [UInt8]? {
        try channel.readOutbound(as: ByteBuffer.self).map { Array($0.readableBytesView) }
    }

    @Test("responder: act two and the keys of Appendix A; messages arrive as slices of the bytes read")
    func responderVectors() throws {
        let (channel, recorder) = try responder()
        #expect(try outbound(channel) == nil, "the responder speaks second")
        try channel.writeInbound(buffer(V.actOne))
        #expect(try outbound(channel) == V.actTwo)
        #expect(recorder.events.isEmpty)
        // Act three and the initiator's first two frames arrive in one read.
        try channel.writeInbound(buffer(V.actThree + V.hello0 + V.hello1))
        #expect(recorder.events == [.handshakeCompleted(remote: V.initiatorID)])
        #expect(recorder.messages == [V.hello, V.hello])
        // Decrypted in place: the second message lies exactly one frame after the first, in the
        // bytes that were read, not in copies.
        #expect(recorder.addresses.count == 2 && recorder.addresses[1] - recorder.addresses[0] == V.hello0.count)

        // What the responder sends, the vectors' initiator reads.
        var far = FarEnd.vectorInitiator()
        try channel.writeAndFlush(buffer([0x80, 0x01, 0xaa])).wait()
        #expect(far.messages(try #require(try outbound(channel))) == [[0x80, 0x01, 0xaa]])
        _ = try channel.finish()
        #expect(recorder.errors.isEmpty && recorder.otherErrors.isEmpty)
    }

    @Test("initiator: act one and act three of Appendix A; a write made during the handshake is the vectors' first frame")
    func initiatorVectors() throws {
        let recorder = Recorder()
        let channel = EmbeddedChannel(handlers: [
            BOLT8Handler(role: .initiator(remote: V.responderID), localSecret: V.initiatorSecret, ephemeral: V.initiatorEphemeral), recorder,
        ])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9735)).wait()
        #expect(try outbound(channel) == V.actOne)
        let queued = channel.writeAndFlush(buffer(V.hello))
        #expect(try outbound(channel) == nil, "held until the handshake completes")
        try channel.writeInbound(buffer(V.actTwo))
        #expect(try outbound(channel) == V.actThree)
        #expect(try outbound(channel) == V.hello0)
        try queued.wait()
        #expect(recorder.events == [.handshakeCompleted(remote: V.responderID)])
        try channel.writeAndFlush(buffer(V.hello)).wait()
        #expect(try outbound(channel) == V.hello1)
        _ = try channel.finish()
        #expect(recorder.errors.isEmpty)
    }

    @Test("drip-fed: every split point of act three and two frames, and the whole connection one byte at a time")
    func dripFed() throws {
        let stream = V.actThree + V.hello0 + V.hello1
        for split in 1..<stream.count {
            let (channel, recorder) = try responder()
            try channel.writeInbound(buffer(V.actOne))
            try channel.writeInbound(buffer(Array(stream[..<split])))
            try channel.writeInbound(buffer(Array(stream[split...])))
            #expect(recorder.events == [.handshakeCompleted(remote: V.initiatorID)], "split at \(split)")
            #expect(recorder.messages == [V.hello, V.hello], "split at \(split)")
            #expect(recorder.errors.isEmpty)
            _ = try channel.finish()
        }
        let (channel, recorder) = try responder()
        for byte in V.actOne { try channel.writeInbound(buffer([byte])) }
        #expect(try outbound(channel) == V.actTwo)
        for byte in stream { try channel.writeInbound(buffer([byte])) }
        #expect(recorder.messages == [V.hello, V.hello])
        _ = try channel.finish()
        #expect(recorder.errors.isEmpty)
    }

    @Test("a bad frame MAC: the messages before it are delivered, then the typed error and the channel closes")
    func badMAC() throws {
        let (channel, recorder) = try responder()
        try channel.writeInbound(buffer(V.actOne))
        var damaged = V.hello1
        damaged[20] ^= 1
        try channel.writeInbound(buffer(V.actThree + V.hello0 + damaged))
        #expect(recorder.messages == [V.hello])
        #expect(recorder.errors == [.badFrameMAC(part: .body)])
        #expect(!channel.isActive && recorder.inactive)
        #expect(recorder.errors.count == 1, "closing after the error reports nothing more")
    }

    @Test("a bad act fails the writes queued during the handshake with the same error")
    func badActFailsQueuedWrites() throws {
        let (channel, recorder) = try responder()
        let queued = channel.writeAndFlush(buffer([0x80, 0x01]))
        try channel.writeInbound(buffer(V.actOne))
        _ = try outbound(channel)
        var badActThree = V.actThree
        badActThree[0] = 1
        try channel.writeInbound(buffer(badActThree))
        #expect(recorder.errors == [.badVersion(act: 3, version: 1)])
        #expect(throws: TransportError.badVersion(act: 3, version: 1)) { try queued.wait() }
        #expect(try outbound(channel) == nil)
        #expect(!channel.isActive)
    }

    /// Two reads, then the end of the stream, and the error that end must give.
    struct EndCase: CustomTestStringConvertible, Sendable {
        var name: String
        var first: [UInt8]
        var second: [UInt8]
        var expected: TransportError?
        var testDescription: String { name }
    }

    @Test("the stream ending mid-act, mid-header and mid-body is reported exactly; between frames it is not an error",
          arguments: [
              EndCase(name: "mid act one", first: Array(V.actOne.prefix(3)), second: [],
                      expected: .truncated(expected: 50, got: 3, during: "act one")),
              EndCase(name: "mid act three", first: V.actOne + V.actThree.prefix(10), second: [],
                      expected: .truncated(expected: 66, got: 10, during: "act three")),
              EndCase(name: "mid header", first: V.actOne, second: V.actThree + V.hello0.prefix(10),
                      expected: .truncated(expected: 18, got: 10, during: "a message header")),
              EndCase(name: "mid body", first: V.actOne, second: V.actThree + V.hello0.prefix(20),
                      expected: .truncated(expected: 21, got: 2, during: "a message body")),
              EndCase(name: "between frames", first: V.actOne, second: V.actThree + V.hello0, expected: nil),
          ])
    func endOfStream(_ test: EndCase) throws {
        let (channel, recorder) = try responder()
        try channel.writeInbound(buffer(test.first))
        if !test.second.isEmpty { try channel.writeInbound(buffer(test.second)) }
        _ = try channel.finish(acceptAlreadyClosed: false)
        #expect(recorder.inactive)
        #expect(recorder.errors == (test.expected.map { [$0] } ?? []))
    }

    @Test("a message over 65535 bytes fails its write; the session goes on")
    func tooLong() throws {
        let (channel, recorder) = try responder()
        try channel.writeInbound(buffer(V.actOne))
        try channel.writeInbound(buffer(V.actThree))
        _ = try outbound(channel)
        #expect(throws: TransportError.messageTooLong(65536)) {
            try channel.writeAndFlush(buffer(Array(repeating: 0, count: 65536))).wait()
        }
        var far = FarEnd.vectorInitiator()
        try channel.writeAndFlush(buffer([1, 2])).wait()
        #expect(far.messages(try #require(try outbound(channel))) == [[1, 2]])
        #expect(recorder.errors.isEmpty)
        _ = try channel.finish()
    }
}
