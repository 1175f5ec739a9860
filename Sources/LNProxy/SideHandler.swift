import LNRelay
import LNRules
import LNTransport
import LNTransportNIO
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Joins one side's channel to its ``ProxySession``: the glue-handler pattern.
///
/// It sits after the BOLT 8 handler, so it sees whole decrypted messages. It forwards nothing itself;
/// it passes the channel's events to the session and does what the session says. Its one job of its
/// own is back-pressure: it withholds `read()` from the socket while the session says this side must
/// not be read, and re-issues it when the session allows reading again.
///
/// Not `Sendable`: it lives on its channel's event loop.
final class SideHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let side: Side
    let session: ProxySession
    private var context: ChannelHandlerContext?
    private var readPending = false
    private var readingAllowed = true
    /// A `reset` asked for before the upstream connection was up.
    private var resetWhenActive = false

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
        session.feed(.closed(side))
    }

    // MARK: Inbound: from this side's node

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        session.received(unwrapInboundIn(data), from: side)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        session.feed(.readComplete(side))
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

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if resetWhenActive {
            resetWhenActive = false
            reset()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.feed(.closed(side))
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        session.feed(.writabilityChanged(side, writable: context.channel.isWritable && !(shaper?.isFull ?? false)))
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if readingAllowed {
            context.read()
        } else {
            readPending = true
        }
    }

    // MARK: Called by the session (same event loop)

    /// Allows or withholds reads; a read withheld meanwhile is re-issued when allowed again.
    func setReading(_ allowed: Bool) {
        readingAllowed = allowed
        guard allowed, readPending, let context else { return }
        readPending = false
        context.read()
    }

    func write(_ message: ByteBuffer) {
        context?.write(wrapOutboundOut(message), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    func close() {
        context?.close(promise: nil)
    }

    /// The `bandwidth`/`slicer` fault's handler on this channel, once a rule installed one.
    private var shaper: ShapingHandler?

    /// Closes with a TCP RST (a `reset` fault): SO_LINGER with a zero timeout makes close(2) send
    /// RST and discard unsent data, as toxiproxy's `reset_peer` does.
    func reset() {
        guard let context else { return }
        let channel = context.channel
        // A `reset` at connect toward b comes before the dial is up: it acts once b accepted.
        guard channel.isActive || side == .a else {
            resetWhenActive = true
            return
        }
        if let provider = channel as? SocketOptionProvider {
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    /// Installs (or retunes) the shaping handler between the BOLT 8 handler and the socket, so that
    /// it splits and paces encrypted bytes (BOLT8Handler itself is not touched). `Shaping.isNone`
    /// sends what waits at once, in order, and lets later writes through unshaped.
    func shape(_ shaping: Shaping) {
        installShaper()?.set(shaping)
    }

    /// A `limit-data` fault at connect: at most `bytes` more bytes go to this side's socket,
    /// handshake acts included; then the session hears `byteLimitReached`.
    func limitBytes(_ bytes: Int) {
        installShaper()?.limit(bytes) { [weak self] in
            guard let self else { return }
            self.session.feed(.byteLimitReached(self.side))
        }
    }

    private func installShaper() -> ShapingHandler? {
        guard let context else { return nil }
        if let shaper { return shaper }
        let handler = ShapingHandler { [weak self] in
            guard let self, let context = self.context else { return }
            self.channelWritabilityChanged(context: context)
        }
        do {
            try context.channel.pipeline.syncOperations.addHandler(handler, position: .first)
        } catch {
            session.failed(side: side, error: error)
            return nil
        }
        shaper = handler
        return handler
    }

    /// The remote address of this side's socket, for events and logs.
    var remoteAddressDescription: String? {
        guard let address = context?.channel.remoteAddress else { return nil }
        return address.hostPortDescription
    }
}

/// Handlers are bound to their channel's event loop, never shared across threads (as swift-nio-ssh
/// declares its handlers).
@available(*, unavailable)
extension SideHandler: Sendable {}
