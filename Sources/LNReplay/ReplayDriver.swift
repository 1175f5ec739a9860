import LNProxy
import LNTransport
import LNTransportNIO
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Where the replay meets the live node.
public enum ReplayEndpoint: Sendable {
    /// Dial the live node (the usual way to play `a`).
    case connect(PeerAddress)
    /// Wait for the live node to dial (the usual way to play `b`).
    case listen(HostPort)
}

/// Runs replay segments over real connections: one BOLT 8 connection per segment, reconnecting
/// between them. All decisions are the `ReplayRunner`'s; this only moves bytes and timers.
public final class ReplayDriver: Sendable {  // immutable: every stored property is a Sendable `let`
    let options: ReplayOptions
    let endpoint: ReplayEndpoint
    let secret: NodeSecret
    /// How long to wait for the TCP connection and the handshake (and, listening, for the live node to dial).
    let connectTimeout: TimeAmount
    let group: EventLoopGroup
    /// Called for every report line, on an event loop thread, in order.
    let onReport: @Sendable (StepOutcome) -> Void
    /// Called once listening, with the bound address (useful with port 0).
    let onListening: @Sendable (SocketAddress?) -> Void

    public init(options: ReplayOptions, endpoint: ReplayEndpoint, secret: NodeSecret, connectTimeout: TimeAmount,
                group: EventLoopGroup, onListening: @escaping @Sendable (SocketAddress?) -> Void = { _ in },
                onReport: @escaping @Sendable (StepOutcome) -> Void) {
        self.options = options
        self.endpoint = endpoint
        self.secret = secret
        self.connectTimeout = connectTimeout
        self.group = group
        self.onListening = onListening
        self.onReport = onReport
    }

    /// Plays every segment in turn. Throws `ReplayError.connection` when a connection cannot be
    /// made or its handshake fails; divergences are reports, not errors.
    public func run(_ segments: [ReplaySegment]) async throws {
        var server: Channel?
        let secret = self.secret
        let accepted = AcceptQueue { channel, handler in
            // A parked connection is attached from the replay's task, off its event loop: hop onto it.
            channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .responder, localSecret: secret), handler])
            }
        }
        defer { if let server { server.close(promise: nil) } }
        if case .listen(let address) = endpoint {
            do {
                server = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in accepted.arrived(channel) }
                    .bind(host: address.host, port: address.port)
                    .get()
            } catch {
                throw ReplayError.connection(NetworkErrorText.listening(on: address.description, error))
            }
            onListening(server?.localAddress)
        }
        var stepNumber = 1
        var previousEnd: UInt64?
        // Identifiers learned in one session hold in the next (a reconnect re-establishes the same channel).
        var binding = IdentifierBinding()
        for (index, segment) in segments.enumerated() {
            if let previousEnd, let start = segment.metadata?.startedNanos, start > previousEnd {
                // Keep the recorded pause between the sessions, as the timing option says.
                let wait = options.timing.wait(forRecordedGap: start - previousEnd)
                if wait > 0 { try? await Task.sleep(nanoseconds: min(wait, 60_000_000_000)) }
            }
            let runner = ReplayRunner(segment: segment, segmentIndex: index, firstStepNumber: stepNumber, options: options,
                                      binding: binding)
            binding = try await play(runner, accepted: accepted)
            stepNumber += segment.stepCount
            previousEnd = segment.endNanos
        }
    }

    /// Plays one segment; returns the binding as it stands at the end.
    private func play(_ runner: ReplayRunner, accepted: AcceptQueue) async throws -> IdentifierBinding {
        let loop = group.next()
        let done = loop.makePromise(of: Void.self)
        let handler = ReplayChannelHandler(runner: runner, handshakeTimeout: connectTimeout, onReport: onReport, done: done)
        let timeout = connectTimeout
        switch endpoint {
        case .connect(let address):
            let secret = self.secret
            do {
                _ = try await ClientBootstrap(group: loop)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .connectTimeout(timeout)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandlers([
                                BOLT8Handler(role: .initiator(remote: address.nodeID), localSecret: secret),
                                DialHintHandler(address: address.hostPort.description, nodeID: address.nodeID), handler,
                            ])
                        }
                    }
                    .connect(host: address.host, port: address.port)
                    .get()
            } catch {
                throw ReplayError.connection(NetworkErrorText.connecting(to: address.hostPort.description, error))
            }
        case .listen(let address):
            accepted.offer(handler)
            // Give up if the live node does not dial in time.
            let giveUp = loop.scheduleTask(in: timeout) {
                if accepted.withdraw(handler) {
                    done.fail(ReplayError.connection("no connection on \(address) within \(timeout.nanoseconds / 1_000_000_000) s"))
                }
            }
            done.futureResult.whenComplete { _ in giveUp.cancel() }
        }
        try await done.futureResult.get()
        // The connection is over and its promise completed after the handler's last change: reading
        // it here is ordered after every write.
        return handler.binding
    }
}

/// Pairs accepted connections with the segments waiting for them, in order. A live node that
/// reconnects before lnrr has finished the previous segment is parked, unread, until the next
/// segment is ready for it; more than one such early connection is turned away.
final class AcceptQueue: Sendable {  // its state is behind a lock
    private struct State {
        var waiting: [ReplayChannelHandler] = []
        var parked: [Channel] = []
    }
    private let state = NIOLockedValueBox(State())
    private let attach: @Sendable (Channel, ReplayChannelHandler) -> EventLoopFuture<Void>

    init(attach: @escaping @Sendable (Channel, ReplayChannelHandler) -> EventLoopFuture<Void>) {
        self.attach = attach
    }

    /// A connection was accepted.
    func arrived(_ channel: Channel) -> EventLoopFuture<Void> {
        enum Next { case attach(ReplayChannelHandler), park, refuse }
        let next: Next = state.withLockedValue { s in
            if !s.waiting.isEmpty { return .attach(s.waiting.removeFirst()) }
            if s.parked.isEmpty { s.parked.append(channel); return .park }
            return .refuse
        }
        switch next {
        case .attach(let handler): return attach(channel, handler)
        case .refuse: return channel.close()
        case .park:
            // Not read until a segment takes it, so the handshake bytes wait in the kernel.
            return channel.setOption(.autoRead, value: false)
        }
    }

    /// A segment is ready for its connection.
    func offer(_ handler: ReplayChannelHandler) {
        let parked: Channel? = state.withLockedValue { s in
            if !s.parked.isEmpty { return s.parked.removeFirst() }
            s.waiting.append(handler)
            return nil
        }
        guard let channel = parked else { return }
        attach(channel, handler).whenSuccess {
            channel.setOption(.autoRead, value: true).whenSuccess { channel.read() }
        }
    }

    func withdraw(_ handler: ReplayChannelHandler) -> Bool {
        state.withLockedValue { s in
            guard let i = s.waiting.firstIndex(where: { $0 === handler }) else { return false }
            s.waiting.remove(at: i)
            return true
        }
    }
}

/// Feeds one connection's events to a `ReplayRunner` and carries out its actions.
///
/// `@unchecked Sendable`: `AcceptQueue` hands it from the replay's task to the event loop of the
/// connection it is attached to, and only its identity (`===`) is used off that loop; every
/// mutable field is touched only in handler callbacks and `perform`, on that loop (the timer
/// closure reaches it through `NIOLoopBound`, which checks).
final class ReplayChannelHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var runner: ReplayRunner
    private let onReport: @Sendable (StepOutcome) -> Void
    private let done: EventLoopPromise<Void>
    private var context: ChannelHandlerContext?
    private var established = false
    private var settled = false
    private var failure: String?
    private let handshakeTimeout: TimeAmount
    private var handshakeTask: Scheduled<Void>?
    private var wakeTask: Scheduled<Void>?
    /// The runner yielded while the channel could take no more: it goes on when it can.
    private var resumeWhenWritable = false
    private var closing = false

    init(runner: ReplayRunner, handshakeTimeout: TimeAmount, onReport: @escaping @Sendable (StepOutcome) -> Void,
         done: EventLoopPromise<Void>) {
        self.runner = runner
        self.handshakeTimeout = handshakeTimeout
        self.onReport = onReport
        self.done = done
    }

    private static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    /// The identifiers the runner learned; read once the connection is over.
    var binding: IdentifierBinding { runner.binding }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let timeout = handshakeTimeout
        handshakeTask = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, !self.established else { return }
            self.failure = "the BOLT 8 handshake did not complete within \(timeout.nanoseconds / 1_000_000) ms"
            self.context?.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? BOLT8Event, case .handshakeCompleted = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        established = true
        handshakeTask?.cancel()
        perform(runner.start(now: Self.now()))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        perform(runner.received(Array(buffer.readableBytesView), now: Self.now()))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && resumeWhenWritable {
            resumeWhenWritable = false
            perform(runner.tick(now: Self.now()))
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if failure == nil { failure = "\(error)" }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTask?.cancel()
        wakeTask?.cancel()
        if established {
            perform(runner.connectionClosed(now: Self.now(), detail: failure.map { "the connection failed: \($0)" }))
            settle(nil)
        } else {
            settle(ReplayError.connection("the connection ended before the BOLT 8 handshake completed" + (failure.map { ": \($0)" } ?? "")))
        }
        context.fireChannelInactive()
    }

    private func perform(_ actions: [RunnerAction]) {
        guard let context else { return }
        var wrote = false
        for action in actions {
            switch action {
            case .send(let bytes):
                var buffer = context.channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                context.write(wrapOutboundOut(buffer), promise: nil)
                wrote = true
            case .close:
                if wrote { context.flush(); wrote = false }
                closeAfterWrites(context)
            case .wake(let at):
                // The runner names one time to wake at; a newer one replaces any earlier request.
                wakeTask?.cancel()
                resumeWhenWritable = false
                let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                wakeTask = context.eventLoop.scheduleTask(deadline: .uptimeNanoseconds(at)) {
                    loopBound.value.perform(loopBound.value.runner.tick(now: Self.now()))
                }
            case .yield:
                // Go on once what was sent has been taken: at once if the socket still takes more,
                // else when it becomes writable (the live node reads).
                wakeTask?.cancel()
                wakeTask = nil
                if wrote { context.flush(); wrote = false }
                if context.channel.isWritable {
                    let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                    wakeTask = context.eventLoop.scheduleTask(deadline: .now()) {
                        loopBound.value.perform(loopBound.value.runner.tick(now: Self.now()))
                    }
                } else {
                    resumeWhenWritable = true
                }
            case .report(let outcome):
                onReport(outcome)
            case .finished:
                break
            }
        }
        if wrote { context.flush() }
        if runner.isFinished && context.channel.isActive {
            closeAfterWrites(context)
        }
    }

    /// Closes once every message written so far has gone out: the output is shut down after the
    /// pending writes (a plain close would discard those still queued, the end of a fast replay),
    /// then the channel is closed.
    private func closeAfterWrites(_ context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        let closed = context.eventLoop.makePromise(of: Void.self)
        context.close(mode: .output, promise: closed)
        let channel = context.channel
        closed.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }

    private func settle(_ error: Error?) {
        guard !settled else { return }
        settled = true
        if let error { done.fail(error) } else { done.succeed(()) }
    }
}
