import Dispatch
import Logging
import LNRecording
import LNRelay
import LNRules
import LNTransport
import LNTransportNIO
import LNWire
import NIOCore
import NIOPosix

extension ByteBuffer: RelayPayload {
    public init(bytes: [UInt8]) {
        self = ByteBufferAllocator().buffer(bytes: bytes)
    }

    @inlinable
    public var byteCount: Int { readableBytes }

    @inlinable
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeReadableBytes(body)
    }
}

/// One proxied connection: a's channel, the upstream channel to b, and the recording between them.
///
/// A thin driver: every decision is `SessionCore`'s. This class feeds it NIO's events and carries
/// out its actions (writes, flushes, reads, timers, the recording, the hook, events for
/// subscribers), as `ReplayDriver` does for `ReplayRunner`.
///
/// `@unchecked Sendable`: the registry hands sessions to other threads (the control socket,
/// shutdown), which only ever reach them through `eventLoop.execute`/`submit`; `id`, `route`,
/// `eventLoop`, `context` and `logger` are immutable. Every mutable field is touched on
/// `eventLoop` alone (the channels of both sides are on that loop), which NIO's handlers
/// guarantee and `eventLoop.preconditionInEventLoop` checks in debug builds.
public final class ProxySession: @unchecked Sendable {
    /// Process-unique session number (also the last part of the recording's file name).
    public let id: Int
    let route: ProxyRoute
    let eventLoop: EventLoop
    let context: ProxyContext
    let logger: Logger

    private var core: SessionCore<ByteBuffer>
    private var a: SideHandler?
    private var b: SideHandler?
    private(set) var aNode: NodeID?
    private var recorder: RecordingWriter?
    private var timers: [SessionTimer: Scheduled<Void>] = [:]
    /// Reused for every event, so relaying a message allocates no action list.
    private var actions: [SessionAction<ByteBuffer>] = []
    /// Events that arrive while actions are being carried out (a write can fire a writability
    /// change, a close fires inactive): handled right after, in order.
    private var inbox = CircularBuffer<SessionEvent<ByteBuffer>>()
    private var draining = false
    /// Whether anyone subscribes to events: looked up at the first message of each socket read and
    /// on every other event, not per message (it takes the bus's lock).
    private var publishing = false
    private var readStarted = false
    /// The core said `finished`: the session keeps no handler from then on.
    private var hasFinished = false

    init(id: Int, route: ProxyRoute, eventLoop: EventLoop, context: ProxyContext) {
        context.sessionsInMemory.withLockedValue { $0 += 1 }
        self.id = id
        self.route = route
        self.eventLoop = eventLoop
        self.context = context
        var logger = context.logger
        logger[metadataKey: "session"] = "\(id)"
        self.logger = logger
        let configuration = context.configuration
        let rules = context.currentRules.withLockedValue { $0 }
        let settings = SessionSettings(
            id: id, nodeB: route.upstream.nodeID.hex, listen: route.listen.description, upstream: route.upstream.description,
            lnrrVersion: configuration.lnrrVersion, syncMode: configuration.syncMode,
            records: configuration.recordingDirectory != nil, requireTransparent: configuration.requireTransparent,
            handshakeTimeoutNanos: UInt64(max(0, configuration.handshakeTimeout.nanoseconds)),
            customMessageHook: false, startedWallNanos: wallClockNanos(),
            hookTypes: Self.hookTypes(configuration.messageHook),
            recordFailedHandshakes: configuration.recordFailedHandshakes)
        core = SessionCore(settings: settings, rules: rules.rules, rulesFile: rules.file, rulesSHA256: rules.sha256,
                           now: Self.monotonicNanos())
    }

    /// The types the hook is asked about, as the core wants them.
    private static func hookTypes(_ hook: (any MessageHook)?) -> (@Sendable (UInt16) -> Bool)? {
        guard let hook else { return nil }
        return { type in hook.consults(type: type) }
    }

    deinit {
        context.sessionsInMemory.withLockedValue { $0 -= 1 }
    }

    @inline(__always)
    private static func monotonicNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    /// A message from a side: the per-message path, with the buffer passed along rather than
    /// wrapped in an event and held by actions.
    func received(_ message: ByteBuffer, from side: Side) {
        eventLoop.assertInEventLoop()
        if draining {
            inbox.append(.received(message, from: side))
            return
        }
        draining = true
        defer { draining = false }
        if !readStarted {
            readStarted = true
            publishing = context.events.active
            core.notify = publishing
        }
        core.received(message, from: side, now: Self.monotonicNanos(), into: &actions)
        perform(received: message)
        while let event = inbox.popFirst() {
            handle(event)
        }
    }

    /// Hands `event` to the core and carries out what it asks.
    func feed(_ event: SessionEvent<ByteBuffer>) {
        eventLoop.assertInEventLoop()
        if draining {
            inbox.append(event)
            return
        }
        draining = true
        defer { draining = false }
        switch event {
        case .received:
            if !readStarted {
                readStarted = true
                publishing = context.events.active
                core.notify = publishing
            }
        case .readComplete:
            // The next read looks again; this one's notices (if any) follow what it saw.
            readStarted = false
        default:
            readStarted = false
            publishing = context.events.active
            core.notify = publishing
        }
        handle(event)
        while let event = inbox.popFirst() {
            handle(event)
        }
    }

    private func handle(_ event: SessionEvent<ByteBuffer>) {
        core.handle(event, now: Self.monotonicNanos(), into: &actions)
        if case .received(let message, _) = event {
            perform(received: message)
        } else {
            perform(received: nil)
        }
    }

    // MARK: Wiring (called by SideHandler on the event loop)

    func attach(_ handler: SideHandler) {
        switch handler.side {
        case .a: a = handler
        case .b: b = handler
        }
        feed(.attached(handler.side, remoteAddress: handler.remoteAddressDescription))
        // An upstream channel that comes up after the session finished was just told to close:
        // do not keep it (it keeps the session).
        if hasFinished { forgetHandlers() }
    }

    private func forgetHandlers() {
        a = nil
        b = nil
    }

    func handshakeCompleted(side: Side, remote: NodeID) {
        if side == .a { aNode = remote }
        feed(.handshakeCompleted(side, remoteNodeID: remote.hex, keyHeld: side == .a && context.keyring.secret(for: remote) != nil))
    }

    func failed(side: Side, error: Error) {
        feed(.failed(Self.reason(for: error, side: side)))
    }

    func setRules(_ rules: RuleSet?, file: String?, sha256: String?) {
        feed(.rulesChanged(rules, file: file, sha256: sha256))
    }

    /// Ends the session because lnrr is shutting down.
    func shutdown() {
        feed(.shutdown)
    }

    private func handler(_ side: Side) -> SideHandler? { side == .a ? a : b }

    // MARK: Actions

    /// Carries out the actions of one event; `received` is that event's message, if it has one.
    private func perform(received: ByteBuffer?) {
        for index in actions.indices {
            if !perform(actions[index], received: received) { break }
        }
        actions.removeAll(keepingCapacity: true)
    }

    /// Carries out one action; false abandons the rest of the step (the recording could not be made).
    private func perform(_ action: SessionAction<ByteBuffer>, received: ByteBuffer?) -> Bool {
        switch action {
        case .deliverReceived(let side):
            if let received { handler(side)?.write(received) }
        case .recordReceived(let direction, let at, let comments):
            guard let recorder, let received else { break }
            received.withUnsafeReadableBytes {
                recorder.message($0, direction: direction, timestampNanos: at, comments: comments, deferWake: true)
            }
        case .deliver(let message, let side):
            handler(side)?.write(message)
        case .recordMessage(let message, let direction, let at, let comments, let batched):
            guard let recorder else { break }
            message.withUnsafeReadableBytes {
                recorder.message($0, direction: direction, timestampNanos: at, comments: comments, deferWake: batched)
            }
        case .flush(let side):
            // Records go to the writer before the messages they describe reach a socket, whichever
            // order the core asked for them (with --sync message, kick writes them out).
            recorder?.kick()
            handler(side)?.flush()
        case .kickRecorder:
            // One wake-up of the recording thread per socket read, not per message.
            recorder?.kick()
        case .setReading(let side, let allowed):
            handler(side)?.setReading(allowed)
        case .publish(let notice):
            if publishing { publish(notice) }
        case .recordEvent(let event, let at):
            recorder?.event(event, timestampNanos: at)
        case .openRecording(let metadata):
            return openRecording(metadata)
        case .dialUpstream(let transparent):
            let identity = transparent ? aNode.flatMap { context.keyring.secret(for: $0) } ?? context.proxyIdentity : context.proxyIdentity
            dialUpstream(as: identity)
        case .runHook(let peerID, let direction, let message):
            runHook(peerID: peerID, direction: direction, message: message)
        case .wake(let timer, let at):
            timers[timer]?.cancel()
            timers[timer] = eventLoop.scheduleTask(deadline: .uptimeNanoseconds(at)) { [weak self] in
                guard let self else { return }
                self.timers[timer] = nil
                self.feed(.timerFired(timer))
            }
        case .cancelWake(let timer):
            timers.removeValue(forKey: timer)?.cancel()
        case .close(let side):
            handler(side)?.close()
        case .reset(let side):
            handler(side)?.reset()
        case .shape(let side, let shaping):
            handler(side)?.shape(shaping)
        case .limitBytes(let side, let bytes):
            handler(side)?.limitBytes(bytes)
        case .log(let level, let message):
            switch level {
            case .debug: logger.debug("\(message)")
            case .info: logger.info("\(message)")
            case .notice: logger.notice("\(message)")
            case .warning: logger.warning("\(message)")
            case .error: logger.error("\(message)")
            }
        case .finished:
            finish()
        }
        return true
    }

    private func dialUpstream(as identity: NodeSecret) {
        let upstream = route.upstream
        let configuration = context.configuration
        ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: configuration.writeBufferWaterMark)
            .connectTimeout(configuration.connectTimeout)
            // Weak: NIO may keep the bootstrap's closures after the connection is made (Happy
            // Eyeballs), and nothing it keeps may keep the session.
            .channelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let self else { throw ChannelError.ioOnClosedChannel }
                    try channel.pipeline.syncOperations.addHandlers([
                        BOLT8Handler(role: .initiator(remote: upstream.nodeID), localSecret: identity),
                        // A node that cuts act two is most likely not the node id dialled: say so.
                        DialHintHandler(address: upstream.hostPort.description, nodeID: upstream.nodeID),
                        SideHandler(side: .b, session: self),
                    ])
                }
            }
            .connect(host: upstream.host, port: upstream.port)
            .whenFailure { [weak self] error in
                guard let self else { return }
                if NetworkErrorText.isOutOfDescriptors(error) {
                    // lnrr's own limit, not the upstream's fault: say so rather than blame b.
                    self.feed(.failed(CloseReason(side: nil, kind: .error,
                                                  detail: NetworkErrorText.connecting(to: upstream.hostPort.description, error))))
                } else {
                    self.feed(.upstreamUnreachable(NetworkErrorText.connecting(to: upstream.hostPort.description, error)))
                }
            }
    }

    /// Asks the hook (plugins or --custommsg-hook) about a message; its answers for this session
    /// and direction come back in the order asked (the `MessageHook` contract).
    private func runHook(peerID: String?, direction: Direction, message: [UInt8]) {
        guard let hook = context.configuration.messageHook else { return }
        let loop = eventLoop
        let query = HookQuery(session: id, direction: direction, peerID: peerID,
                              phase: core.stage.phases.connectionPhase.rawValue, message: message)
        hook.ask(query) { [weak self] outcome in
            let verdict: HookVerdict
            switch outcome.result {
            case .continue: verdict = .continue
            case .drop: verdict = .drop
            case .replace(let bytes): verdict = .replace(bytes)
            }
            let answer = HookAnswer(verdict, injectBefore: outcome.injectBefore, injectAfter: outcome.injectAfter,
                                    problem: outcome.problem, by: outcome.decidedBy)
            loop.execute { [weak self] in self?.feed(.hookDecided(direction, answer)) }
        }
    }

    private func openRecording(_ metadata: SessionMetadata) -> Bool {
        guard let directory = context.configuration.recordingDirectory else { return true }
        do {
            let loop = eventLoop
            recorder = try RecordingWriter(
                directory: directory, metadata: metadata, sync: context.configuration.syncMode,
                onBackpressure: { [weak self] behind in loop.execute { [weak self] in self?.feed(.recorderBackpressure(behind)) } },
                onFailure: { [weak self] why in loop.execute { [weak self] in self?.feed(.recordingFailed(why)) } })
            return true
        } catch {
            // Nothing else of this step can happen without a recording; the core ends the session.
            inbox.append(.recordingUnavailable("\(directory): \(error)"))
            return false
        }
    }

    private func finish() {
        for timer in timers.values { timer.cancel() }
        timers.removeAll()
        if !core.authenticated { context.registry.countFailedHandshake() }
        // Each SideHandler holds its session: drop the session's references to them, or the pair
        // (with the core, its queues and the recorder's buffers) outlives the session.
        hasFinished = true
        forgetHandlers()
        guard let recorder else {
            context.registry.remove(self)
            return
        }
        // Closing drains the writer and fsyncs: never on the event loop.
        let logger = self.logger
        DispatchQueue.global().async { [self] in
            do {
                let count = try recorder.close()
                logger.debug("recording closed", metadata: ["path": "\(recorder.path)", "messages": "\(count)"])
            } catch {
                logger.error("\(error)")
            }
            self.context.registry.remove(self, recording: recorder.path)
        }
    }

    static func reason(for error: Error, side: Side) -> CloseReason {
        if let failure = error as? DialFailure, let underlying = failure.underlying as? TransportError {
            var reason = reason(for: underlying, side: side)
            reason.detail += "; \(failure.hint)"
            return reason
        }
        if let error = error as? TransportError {
            switch error.category {
            case .handshake: return CloseReason(side: side, kind: .handshakeFailure, detail: "\(error)")
            case .authentication: return CloseReason(side: side, kind: .macFailure, detail: "\(error)")
            case .truncated: return CloseReason(side: side, kind: .truncated, detail: "\(error)")
            case .usage: return CloseReason(side: side, kind: .error, detail: "\(error)")
            }
        }
        return CloseReason(side: side, kind: .error, detail: "\(error)")
    }

    // MARK: Introspection

    /// A snapshot for `listsessions` and logs; call on the session's event loop.
    func snapshot() -> SessionSnapshot {
        SessionSnapshot(id: id, nodeA: aNode, nodeB: route.upstream.nodeID, listen: route.listen.description,
                        upstream: route.upstream.description, transparent: core.transparent,
                        startedNanos: core.settings.startedWallNanos, messagesAToB: core.messagesAToB, messagesBToA: core.messagesBToA,
                        recording: recorder?.path, connected: core.isConnected,
                        phase: core.stage.phases.connectionPhase.rawValue,
                        channels: core.stage.phases.channels.map { ($0.id.hex, $0.phase.rawValue) })
    }

    /// Sends a message into the session from outside (control socket): recorded as injected.
    /// Fails when the session has ended or the upstream is not connected yet.
    func injectFromControl(_ message: [UInt8], _ direction: Direction, source: String) throws {
        guard core.acceptsInjections else { throw ControlError.notConnected }
        guard core.mayInject(direction) else {
            // Taking it would buffer without bound behind a peer that does not read.
            throw RPCFailure(.busy, "session \(id): \(direction.receiver) is not reading fast enough (its socket or queue is full); try again later")
        }
        feed(.inject(message, direction, source: source))
    }

    /// Ends the session because the control socket asked.
    func disconnectFromControl() {
        feed(.disconnect)
    }
}

/// What `listsessions` reports for one session.
public struct SessionSnapshot: Sendable {
    public var id: Int
    public var nodeA: NodeID?
    public var nodeB: NodeID
    public var listen: String
    public var upstream: String
    public var transparent: Bool
    public var startedNanos: UInt64
    public var messagesAToB: Int
    public var messagesBToA: Int
    public var recording: String?
    /// Both sides are up and the session has not ended.
    public var connected: Bool
    /// The connection's phase and each channel's (id hex, phase).
    public var phase: String
    public var channels: [(String, String)]
}
