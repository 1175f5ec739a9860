import LNTransport
import LNTransportNIO
import LNWire
import NIOCore
import NIOPosix

/// What the embedded test peer does on a connection.
public struct TestPeerOptions: Sendable {
    /// The `features` field of the `init` it sends (big-endian bitfield bytes).
    public var features: [UInt8]
    /// Messages (type + payload) sent, in order, once the remote's `init` has arrived.
    public var messagesToSend: [[UInt8]]
    /// Echo every custom message (types 32768-65535) back to the sender.
    public var echoCustom: Bool
    /// End cleanly after this many received messages (the remote's `init` included).
    public var exitAfter: Int?
    /// End cleanly when nothing arrives for this long.
    public var idleTimeout: TimeAmount?

    public init(features: [UInt8] = [], messagesToSend: [[UInt8]] = [], echoCustom: Bool = false,
                exitAfter: Int? = nil, idleTimeout: TimeAmount? = nil) {
        self.features = features
        self.messagesToSend = messagesToSend
        self.echoCustom = echoCustom
        self.exitAfter = exitAfter
        self.idleTimeout = idleTimeout
    }
}

/// What the test peer reports: every message in and out, and how the connection ended.
public enum TestPeerEvent: Sendable {
    case connected(remote: NodeID)
    case message(incoming: Bool, bytes: [UInt8])
    /// The connection ended; `failure` is nil for a clean end.
    case ended(failure: String?)
}

/// A minimal Lightning node for demos and tests: sends `init`, answers `ping` with `pong`, ignores
/// unknown odd messages and fails the connection on unknown even ones, as BOLT 1 requires.
public final class TestPeerHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let options: TestPeerOptions
    private let report: (TestPeerEvent) -> Void
    private var received = 0
    private var remoteInitSeen = false
    private var failure: String?
    private var ended = false
    private var idleTask: Scheduled<Void>?

    /// `report` is called on the channel's event loop for every event.
    public init(options: TestPeerOptions, report: @escaping (TestPeerEvent) -> Void) {
        self.options = options
        self.report = report
    }

    public func channelActive(context: ChannelHandlerContext) {
        armIdleTimer(context: context)
        context.fireChannelActive()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? BOLT8Event, case .handshakeCompleted(let remote) = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        report(.connected(remote: remote))
        send(Self.initMessage(features: options.features), context: context)
        context.flush()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let bytes = Array(buffer.readableBytesView)
        received += 1
        report(.message(incoming: true, bytes: bytes))
        armIdleTimer(context: context)
        guard let type = WireMessage.type(bytes) else {
            fail("received a message shorter than its 2-byte type", context: context)
            return
        }
        switch type {
        case WireType.initMessage:
            if !remoteInitSeen {
                remoteInitSeen = true
                for message in options.messagesToSend { send(message, context: context) }
            }
        case WireType.ping:
            answerPing(bytes, context: context)
        default:
            if !remoteInitSeen {
                fail("received type \(type) before init (BOLT 1: init comes first)", context: context)
                return
            }
            // With --echo the peer speaks the custom protocol, so even custom types are "known" to it.
            if type >= 32768 && options.echoCustom {
                send(bytes, context: context)
            } else if type % 2 == 0 && MessageCatalogue.name(of: type) == nil {
                fail("received unknown even message type \(type): BOLT 1 says to fail the connection", context: context)
                return
            }
        }
        if let limit = options.exitAfter, received >= limit {
            finish(context: context)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail("\(error)", context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        idleTask?.cancel()
        if !ended {
            ended = true
            if let limit = options.exitAfter, received < limit, failure == nil {
                failure = "connection closed after \(received) of the \(limit) messages expected"
            } else if !remoteInitSeen, failure == nil {
                failure = "connection closed before the remote's init"
            }
            report(.ended(failure: failure))
        }
        context.fireChannelInactive()
    }

    // MARK: -

    private func answerPing(_ ping: [UInt8], context: ChannelHandlerContext) {
        guard ping.count >= 6 else {
            fail("malformed ping: \(ping.count) bytes", context: context)
            return
        }
        guard let pong = WireMessage.pong(answering: ping) else { return }
        send(pong, context: context)
    }

    private func send(_ message: [UInt8], context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: message.count)
        buffer.writeBytes(message)
        report(.message(incoming: false, bytes: message))
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func fail(_ why: String, context: ChannelHandlerContext) {
        if failure == nil { failure = why }
        context.close(promise: nil)
    }

    private func finish(context: ChannelHandlerContext) {
        context.flush()
        context.close(promise: nil)
    }

    private func armIdleTimer(context: ChannelHandlerContext) {
        guard let timeout = options.idleTimeout else { return }
        idleTask?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        idleTask = context.eventLoop.scheduleTask(in: timeout) {
            loopBound.value.close(promise: nil)
        }
    }

    /// BOLT 1 `init`: `u16 gflen, globalfeatures, u16 flen, features` (no TLVs).
    static func initMessage(features: [UInt8]) -> [UInt8] {
        var message: [UInt8] = [UInt8(WireType.initMessage >> 8), UInt8(WireType.initMessage & 0xff), 0, 0]
        message.append(UInt8(features.count >> 8))
        message.append(UInt8(features.count & 0xff))
        message.append(contentsOf: features)
        return message
    }
}

/// Message types the proxy and test peer handle themselves.
enum WireType {
    static let initMessage: UInt16 = 16
    static let error: UInt16 = 17
    static let ping: UInt16 = 18
}
