import LNTransport
import LNTransportNIO
import NIOCore

/// Joins one side's channel to its ``ProxySession``: the glue-handler pattern.
///
/// It sits after the BOLT 8 handler, so it sees whole decrypted messages. It forwards nothing itself;
/// the session decides where each message goes. Its one job besides relaying events is back-pressure:
/// it withholds `read()` from the socket while the session says this side must not read (the other
/// side's socket is full, or the recording is behind), and releases it when the session says so.
final class SideHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let side: Side
    let session: ProxySession
    fileprivate var context: ChannelHandlerContext?
    private var readPending = false

    init(side: Side, session: ProxySession) {
        self.side = side
        self.session = session
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        session.attach(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // A channel that never connected is torn down without channelInactive: this is the one
        // signal every channel gives when it goes away.
        session.inactive(side: side)
    }

    // MARK: Inbound: from this side's node

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        session.received(unwrapInboundIn(data), from: side)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        session.readComplete(from: side)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? BOLT8Event, case .handshakeCompleted(let remote) = event {
            session.handshakeCompleted(side: side, remote: remote)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        session.failed(side: side, error: error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.inactive(side: side)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            session.becameWritable(side: side)
        }
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if session.mayRead(side) {
            context.read()
        } else {
            readPending = true
        }
    }

    // MARK: Called by the session (same event loop)

    var isWritable: Bool { context?.channel.isWritable ?? false }
    var isActive: Bool { context?.channel.isActive ?? false }

    /// Re-issues a read that was withheld, once the session allows reading again.
    func resumeReadingIfAllowed() {
        guard readPending, let context, session.mayRead(side) else { return }
        readPending = false
        context.read()
    }

    func write(_ message: ByteBuffer) {
        context?.write(wrapOutboundOut(message), promise: nil)
    }

    func write(_ message: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(message), promise: promise)
    }

    func flush() {
        context?.flush()
    }

    func close() {
        context?.close(promise: nil)
    }
}

extension SideHandler {
    /// The remote address of this side's socket, for events and logs.
    var remoteAddressDescription: String? {
        guard let address = context?.channel.remoteAddress else { return nil }
        return address.hostPortDescription
    }
}
