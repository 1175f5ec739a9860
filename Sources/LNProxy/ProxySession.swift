import Dispatch
import Logging
import LNRecording
import LNRules
import LNTransport
import LNTransportNIO
import LNWire
import NIOCore
import NIOPosix

/// One proxied connection: a's channel, the upstream channel to b, and the recording between them.
///
/// All state is confined to the event loop of a's channel; b's channel is created on the same loop,
/// so relaying needs no locks and order per direction is the order of reads.
public final class ProxySession: @unchecked Sendable {  // confined to its event loop; see above
    /// Process-unique session number (also the last part of the recording's file name).
    public let id: Int
    let route: ProxyRoute
    let eventLoop: EventLoop
    let context: ProxyContext
    let logger: Logger
    /// When a connected, in nanoseconds since the epoch.
    let startedNanos: UInt64

    private var a: SideHandler?
    private var b: SideHandler?
    private(set) var aNode: NodeID?
    private(set) var transparent = false
    private var bReady = false
    private var aInactive = false
    private var bInactive = true  // until b's channel exists
    private var closeReason: CloseReason?
    private var finished = false

    /// Messages a sent before the upstream was ready, delivered in order once it is.
    private var heldForB = CircularBuffer<ByteBuffer>()
    private var heldBytes = 0
    /// Above this many held bytes, a is not read until the upstream is up.
    private static let holdLimit = 256 * 1024

    private var recorder: RecordingWriter?
    /// Ends the session if a handshake (a's, then b's) takes longer than the configured limit.
    private var handshakeDeadline: Scheduled<Void>?
    /// True while the recording is behind: no side is read until it catches up.
    private var recorderBlocked = false

    /// Each channel's phase (Core Lightning's ownership model); changes are annotated in the recording.
    private(set) var stage = RuleStage(rules: nil)
    var phases: PhaseTracker { stage.phases }
    private(set) var messagesAToB = 0
    private(set) var messagesBToA = 0

    init(id: Int, route: ProxyRoute, eventLoop: EventLoop, context: ProxyContext) {
        self.id = id
        self.route = route
        self.eventLoop = eventLoop
        self.context = context
        self.startedNanos = wallClockNanos()
        var logger = context.logger
        logger[metadataKey: "session"] = "\(id)"
        self.logger = logger
        stage.nodeB = route.upstream.nodeID.hex
        let rules = context.currentRules.withLockedValue { $0 }
        setRules(rules.rules, file: rules.file, sha256: rules.sha256)
    }

    // MARK: Wiring

    func attach(_ handler: SideHandler) {
        switch handler.side {
        case .a: a = handler
        case .b: b = handler; bInactive = false
        }
        armHandshakeDeadline(for: handler.side)
    }

    private func armHandshakeDeadline(for side: Side) {
        handshakeDeadline?.cancel()
        let limit = context.configuration.handshakeTimeout
        handshakeDeadline = eventLoop.scheduleTask(in: limit) { [weak self] in
            guard let self else { return }
            let who = side == .a ? "a did not complete its handshake" : "b did not answer the handshake"
            self.end(CloseReason(side: side, kind: .handshakeFailure, detail: "\(who) within \(limit.nanoseconds / 1_000_000) ms"))
        }
    }

    /// Whether `side`'s socket may be read now.
    func mayRead(_ side: Side) -> Bool {
        if recorderBlocked || halted == .blackhole { return false }
        // A slow hook holds its direction; stop reading that side before the queue grows large.
        if (hookQueue[side.sending]?.count ?? 0) > 256 { return false }
        switch side {
        case .a:
            guard bReady else { return heldBytes < Self.holdLimit }
            return b?.isWritable ?? false
        case .b:
            return a?.isWritable ?? false
        }
    }

    func becameWritable(side: Side) {
        handler(side.other)?.resumeReadingIfAllowed()
    }

    private func handler(_ side: Side) -> SideHandler? { side == .a ? a : b }

    // MARK: Handshakes

    func handshakeCompleted(side: Side, remote: NodeID) {
        switch side {
        case .a: aHandshakeDone(aNode: remote)
        case .b: bHandshakeDone()
        }
    }

    private func aHandshakeDone(aNode: NodeID) {
        self.aNode = aNode
        stage.nodeA = aNode.hex
        let identity: NodeSecret
        if let secret = context.keyring.secret(for: aNode) {
            identity = secret
            transparent = true
        } else if context.configuration.requireTransparent {
            openRecorder()
            recordEvent(.init(name: "handshake", fields: ["side": .string("a"), "node_id": .string(aNode.hex)]))
            end(CloseReason(side: .a, kind: .refused,
                            detail: "no key for a (\(aNode.hex)) in the keyring and --require-transparent is set"))
            return
        } else {
            identity = context.proxyIdentity
            transparent = false
        }
        openRecorder()
        recordEvent(.init(name: "handshake", fields: [
            "side": .string("a"), "node_id": .string(aNode.hex), "transparent": .bool(transparent),
        ]))
        logger.info("a connected", metadata: ["a": "\(aNode.hex)", "transparent": "\(transparent)"])
        context.events.publish("{\"event\":\"session-start\",\"session\":\(id),\"node_a\":\"\(aNode.hex)\",\"node_b\":\"\(route.upstream.nodeID.hex)\",\"transparent\":\(transparent)}")
        dialUpstream(as: identity)
    }

    private func dialUpstream(as identity: NodeSecret) {
        let upstream = route.upstream
        let configuration = context.configuration
        ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: configuration.writeBufferWaterMark)
            .connectTimeout(configuration.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        BOLT8Handler(role: .initiator(remote: upstream.nodeID), localSecret: identity),
                        SideHandler(side: .b, session: self),
                    ])
                }
            }
            .connect(host: upstream.host, port: upstream.port)
            .whenFailure { [self] error in
                self.end(CloseReason(side: .b, kind: .upstreamUnreachable,
                                     detail: "\(upstream.host):\(upstream.port): \(error)"))
            }
    }

    private func bHandshakeDone() {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        bReady = true
        recordEvent(.init(name: "handshake", fields: ["side": .string("b"), "node_id": .string(route.upstream.nodeID.hex)]))
        guard closeReason == nil, let b else { return }
        while let message = heldForB.popFirst() {
            b.write(message)
        }
        heldBytes = 0
        b.flush()
        a?.resumeReadingIfAllowed()
    }

    // MARK: Relaying

    func received(_ message: ByteBuffer, from side: Side) {
        let direction = side.sending
        let now = wallClockNanos()
        if direction == .aToB { messagesAToB += 1 } else { messagesBToA += 1 }
        var decision: RuleEffects?
        // The record the hook will be asked about: the replacement when a rule replaced the message.
        var hookRecord = -1
        message.withUnsafeReadableBytes { bytes in
            var comments: [String] = []
            var observation: PhaseObservation
            if halted != nil {
                observation = stage.observe(bytes, direction: direction)
                comments.append("not delivered: the connection is \(halted!.rawValue) by a rule")
            } else {
                let plan = stage.process(bytes, direction: direction)
                observation = plan.observation
                if !plan.isPlain { decision = plan.effects }
            }
            comments = (observation.changes.isEmpty ? [] : observation.changes.map { "phase \($0.description)" }) + comments
            comments += decision?.annotations ?? []
            if context.events.active {
                publishMessage(Array(bytes), direction, action: decision.map { $0.delivery == .none } == true ? "dropped" : nil,
                               phaseChanges: observation.changes.map(\.description), annotations: decision?.annotations ?? [])
            }
            guard recorder != nil else { return }
            // `delivery:` comments let a replay tell what the receiver actually got (docs/recording-format.md).
            let replacement = decision?.replacement
            if halted != nil || decision?.delivery == RuleEffects.Delivery.none {
                comments.append(DeliveryNote.none.comment)
            } else if replacement != nil {
                comments.append(DeliveryNote.replaced.comment)
            } else if decision?.copies == 2 {
                comments.append(DeliveryNote.twice.comment)
            }
            // Messages injected before this one reach the receiver first, so they are recorded first.
            for injected in decision?.injectBefore ?? [] {
                recordInjection(injected.message, injected.direction, note: decision!.annotations)
            }
            let index = recordMessage(bytes, direction, timestampNanos: now, comments: comments, deferWake: true)
            hookRecord = index
            if let replacement {
                let note: DeliveryNote = decision!.copies == 2 ? .replacementTwice : .replacement
                hookRecord = recordMessage(replacement, direction, timestampNanos: now, comments: [note.comment, "replacement for #\(index)"])
            }
        }
        guard closeReason == nil, halted == nil else { return }
        if let hook = context.configuration.customMessageHook {
            // Rules run first: a custom message the rules drop never reaches the hook.
            let isCustom = (message.getInteger(at: message.readerIndex, as: UInt16.self).map { $0 >= 32768 } ?? false)
                && decision?.delivery != RuleEffects.Delivery.none
            if isCustom || hookRunning.contains(direction) || !(hookQueue[direction]?.isEmpty ?? true) {
                // Order per direction is kept: everything behind a custom message waits for its hook.
                hookQueue[direction, default: []].append((message, decision, isCustom, hookRecord))
                pumpHook(direction, hook)
                return
            }
        }
        relay(message, decision, direction)
    }

    private func relay(_ message: ByteBuffer, _ decision: RuleEffects?, _ direction: Direction) {
        guard let decision else {
            deliver(message, direction)
            return
        }
        apply(decision, original: message, direction: direction)
    }

    // MARK: Custom message hook

    private var hookQueue: [Direction: CircularBuffer<(ByteBuffer, RuleEffects?, Bool, Int)>] = [:]
    private var hookRunning = Set<Direction>()

    private func pumpHook(_ direction: Direction, _ hook: CustomMessageHook) {
        while !hookRunning.contains(direction), let (message, decision, isCustom, record) = hookQueue[direction]?.first {
            guard closeReason == nil, halted == nil else { hookQueue[direction]?.removeAll(); return }
            guard isCustom else {
                _ = hookQueue[direction]?.popFirst()
                relay(message, decision, direction)
                continue
            }
            hookRunning.insert(direction)
            let sender = direction == .aToB ? aNode?.hex : route.upstream.nodeID.hex
            let loop = eventLoop
            hook.run(peerID: sender, direction: direction, message: decision?.replacement ?? Array(message.readableBytesView)) { [weak self] verdict, problem in
                loop.execute {
                    guard let self else { return }
                    self.hookRunning.remove(direction)
                    _ = self.hookQueue[direction]?.popFirst()
                    if let problem { self.logger.warning("custommsg hook ignored (message continues): \(problem)") }
                    var fields: [String: RecordingEventValue] = ["direction": .string(direction.rawValue)]
                    if record >= 0 { fields["message"] = .int(record) }
                    switch verdict {
                    case .continue:
                        fields["result"] = .string(problem == nil ? "continue" : "continue (hook ignored: \(problem!))")
                        self.relay(message, decision, direction)
                    case .drop:
                        fields["result"] = .string("drop")
                    case .replace(let bytes):
                        fields["result"] = .string("replace")
                        fields["payload"] = .string(HexString.encode(bytes))
                        if self.recorder != nil {
                            self.recordMessage(bytes, direction, timestampNanos: wallClockNanos(),
                                               comments: [DeliveryNote.replacement.comment, "replacement for #\(record) by the custommsg hook"])
                        }
                        self.relay(ByteBufferAllocator().buffer(bytes: bytes), decision.map { d in
                            var d = d
                            if d.delivery != .none { d.delivery = .replacement(bytes) }
                            return d
                        }, direction)
                    }
                    self.recordEvent(.init(name: "hook", fields: fields))
                    // Messages that waited behind this one are relayed by the pump; flush them together.
                    self.pumpHook(direction, hook)
                    self.handler(direction == .aToB ? .b : .a)?.flush()
                    self.handler(direction == .aToB ? .a : .b)?.resumeReadingIfAllowed()
                }
            }
        }
    }

    // MARK: Rules

    /// Set by a `blackhole` or `stall` disconnect: nothing more is relayed or read.
    private var halted: DisconnectKind?
    /// Messages held back per direction by a `delay`, in order, with when each may go.
    private var delayed: [Direction: CircularBuffer<(ByteBuffer, NIODeadline)>] = [:]

    private var rulesFile: String?
    private var rulesSHA256: String?

    func setRules(_ rules: RuleSet?, file: String?, sha256: String?) {
        let reloaded = stage.engine != nil || rulesFile != nil
        stage.setRules(rules)
        rulesFile = file
        rulesSHA256 = sha256
        if reloaded, recorder != nil {
            var fields: [String: RecordingEventValue] = ["rules": .int(rules?.rules.count ?? 0)]
            if let file { fields["file"] = .string(file) }
            if let sha256 { fields["sha256"] = .string(sha256) }
            recordEvent(.init(name: "rules-reloaded", fields: fields))
        }
    }

    private func apply(_ decision: RuleEffects, original: ByteBuffer, direction: Direction) {
        // Recorded when the matched message was (they precede it); only delivered here.
        for injected in decision.injectBefore { inject(injected.message, injected.direction, note: decision.annotations, record: false) }
        if decision.delivers {
            let buffer = decision.replacement.map { ByteBufferAllocator().buffer(bytes: $0) } ?? original
            for _ in 0..<decision.copies {
                if decision.delayMilliseconds > 0 {
                    hold(buffer, direction, for: .milliseconds(Int64(decision.delayMilliseconds)))
                } else {
                    deliver(buffer, direction)
                }
            }
        }
        for injected in decision.injectAfter { inject(injected.message, injected.direction, note: decision.annotations) }
        guard let kind = decision.disconnect else { return }
        switch kind {
        case .before:
            end(disconnectReason(kind))
        case .after, .afterReceive:
            // Close once the message has been handed to the receiver's socket.
            handler(direction == .aToB ? .b : .a)?.flush()
            end(disconnectReason(kind))
        case .drop:
            break
        case .blackhole, .stall:
            if kind == .stall { handler(direction == .aToB ? .b : .a)?.flush() }
            halted = kind
            recordEvent(.init(name: "rule-halt", fields: ["kind": .string(kind.rawValue)]))
        }
    }

    private func disconnectReason(_ kind: DisconnectKind) -> CloseReason {
        CloseReason(side: nil, kind: .disconnected, detail: "rule disconnect \(kind.rawValue) (\(kind.symbol))")
    }

    /// Sends a message lnrr made up, and records it as such.
    func inject(_ message: [UInt8], _ direction: Direction, note: [String], record: Bool = true) {
        let buffer = ByteBufferAllocator().buffer(bytes: message)
        if record { recordInjection(message, direction, note: note) }
        publishMessage(message, direction, action: "injected")
        deliver(buffer, direction)
        handler(direction == .aToB ? .b : .a)?.flush()
    }

    private func hold(_ message: ByteBuffer, _ direction: Direction, for delay: TimeAmount) {
        let deadline = NIODeadline.now() + delay
        let wasEmpty = delayed[direction, default: []].isEmpty
        delayed[direction, default: []].append((message, deadline))
        if wasEmpty { scheduleRelease(direction, at: deadline) }
    }

    private func scheduleRelease(_ direction: Direction, at deadline: NIODeadline) {
        eventLoop.scheduleTask(deadline: deadline) { [weak self] in self?.release(direction) }
    }

    private func release(_ direction: Direction) {
        guard closeReason == nil, halted == nil else { return }
        while let (message, deadline) = delayed[direction]?.first {
            if deadline > .now() {
                scheduleRelease(direction, at: deadline)
                break
            }
            _ = delayed[direction]?.popFirst()
            deliverNow(message, direction)
        }
        handler(direction == .aToB ? .b : .a)?.flush()
    }

    /// Delivers in order: behind anything a `delay` is still holding in that direction.
    private func deliver(_ message: ByteBuffer, _ direction: Direction) {
        if let queue = delayed[direction], !queue.isEmpty {
            delayed[direction]!.append((message, queue.last!.1))
            return
        }
        deliverNow(message, direction)
    }

    private func deliverNow(_ message: ByteBuffer, _ direction: Direction) {
        switch direction {
        case .aToB:
            if bReady, let b {
                b.write(message)
            } else {
                heldBytes += message.readableBytes
                heldForB.append(message)
            }
        case .bToA:
            a?.write(message)
        }
    }

    func readComplete(from side: Side) {
        // One wake-up of the recording thread per socket read, not per message.
        recorder?.kick()
        if side == .a && !bReady { return }
        handler(side.other)?.flush()
    }

    // MARK: Endings

    func failed(side: Side, error: Error) {
        end(Self.reason(for: error, side: side))
    }

    func inactive(side: Side) {
        switch side {
        case .a:
            if aInactive { return }
            aInactive = true
        case .b:
            if bInactive { return }
            bInactive = true
        }
        if closeReason == nil {
            end(CloseReason(side: side, kind: .eof, detail: side == .a ? "a closed the connection" : "b closed the connection"))
        }
        finishIfDone()
    }

    /// Ends the session for `reason`: records it, closes both sides. Idempotent; the first reason wins.
    func end(_ reason: CloseReason) {
        guard closeReason == nil else { return }
        closeReason = reason
        if recorder == nil { openRecorder() }
        var fields: [String: RecordingEventValue] = ["reason": .string(reason.kind.rawValue)]
        if let side = reason.side { fields["by"] = .string(side.rawValue) }
        if !reason.detail.isEmpty { fields["detail"] = .string(reason.detail) }
        recordEvent(.init(name: "close", fields: fields))
        context.events.publish("{\"event\":\"session-end\",\"session\":\(id),\"reason\":\"\(reason.kind.rawValue)\",\"detail\":\(jsonQuoted(reason.detail))}")
        if reason.kind == .eof || reason.kind == .shutdown {
            logger.info("session ended: \(reason)")
        } else {
            logger.notice("session ended: \(reason)")
        }
        heldForB.removeAll()
        handshakeDeadline?.cancel()
        a?.close()
        b?.close()
        finishIfDone()
    }

    private func finishIfDone() {
        guard !finished, closeReason != nil, aInactive || a == nil, bInactive || b == nil else { return }
        finished = true
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

    // MARK: Recording

    private func openRecorder() {
        guard recorder == nil, let directory = context.configuration.recordingDirectory else { return }
        let metadata = SessionMetadata(
            lnrrVersion: context.configuration.lnrrVersion,
            sessionID: id,
            startedNanos: startedNanos,
            nodeA: aNode?.hex,
            nodeB: route.upstream.nodeID.hex,
            listen: route.listen.description,
            upstream: route.upstream.description,
            transparent: transparent,
            syncMode: context.configuration.syncMode,
            rulesFile: rulesFile,
            rulesSHA256: rulesSHA256
        )
        do {
            let loop = eventLoop
            recorder = try RecordingWriter(
                directory: directory, metadata: metadata, sync: context.configuration.syncMode,
                onBackpressure: { [weak self] blocked in loop.execute { self?.recorderBackpressure(blocked) } },
                onFailure: { [weak self] why in
                    loop.execute { self?.end(CloseReason(side: nil, kind: .error, detail: "recording failed: \(why)")) }
                })
            recordEvent(.init(name: "session-start", fields: ["a_address": .string(context.describePeer(a))]), at: startedNanos)
        } catch {
            logger.error("cannot create a recording in \(directory): \(error); ending the session so nothing goes unrecorded")
            recorder = nil
            closeReason = closeReason ?? CloseReason(side: nil, kind: .error, detail: "recording could not be created: \(error)")
            a?.close()
            b?.close()
        }
    }

    private func recorderBackpressure(_ blocked: Bool) {
        guard blocked != recorderBlocked else { return }
        recorderBlocked = blocked
        recordEvent(.init(name: "backpressure", fields: ["on": .bool(blocked), "cause": .string("recording")]))
        if !blocked {
            a?.resumeReadingIfAllowed()
            b?.resumeReadingIfAllowed()
        }
    }

    /// Messages recorded so far: the index the next one gets in the file (hook events refer to it).
    private var recordedMessages = 0

    @discardableResult
    private func recordMessage(_ bytes: UnsafeRawBufferPointer, _ direction: Direction, timestampNanos: UInt64,
                               comments: [String], deferWake: Bool = false) -> Int {
        recorder?.message(bytes, direction: direction, timestampNanos: timestampNanos, comments: comments, deferWake: deferWake)
        recordedMessages += 1
        return recordedMessages - 1
    }

    @discardableResult
    private func recordMessage(_ bytes: [UInt8], _ direction: Direction, timestampNanos: UInt64, comments: [String]) -> Int {
        bytes.withUnsafeBytes { recordMessage($0, direction, timestampNanos: timestampNanos, comments: comments) }
    }

    private func recordInjection(_ message: [UInt8], _ direction: Direction, note: [String]) {
        guard recorder != nil else { return }
        recordMessage(message, direction, timestampNanos: wallClockNanos(),
                      comments: ["injected by lnrr", DeliveryNote.injected.comment] + note.filter { $0.contains("injected") })
    }

    private func recordEvent(_ event: RecordingEvent, at nanos: UInt64? = nil) {
        recorder?.event(event, timestampNanos: nanos ?? wallClockNanos())
    }

    // MARK: Introspection

    /// A snapshot for `listsessions` and logs; call on the session's event loop.
    func snapshot() -> SessionSnapshot {
        SessionSnapshot(id: id, nodeA: aNode, nodeB: route.upstream.nodeID, listen: route.listen.description,
                        upstream: route.upstream.description, transparent: transparent,
                        startedNanos: startedNanos, messagesAToB: messagesAToB, messagesBToA: messagesBToA,
                        recording: recorder?.path, connected: closeReason == nil && bReady,
                        phase: phases.connectionPhase.rawValue,
                        channels: phases.channels.map { ($0.id.hex, $0.phase.rawValue) })
    }

    /// Sends a message into the session from outside (control socket, hook): recorded as injected.
    /// Fails when the session has ended or the upstream is not connected yet.
    func injectFromControl(_ message: [UInt8], _ direction: Direction, source: String) throws {
        guard closeReason == nil, bReady else { throw ControlError.notConnected }
        // Rule injections are shown to the phase tracker by the stage; this one comes from outside.
        message.withUnsafeBytes { _ = stage.observe($0, direction: direction) }
        inject(message, direction, note: ["injected by \(source)"])
    }

    /// Ends the session because the control socket asked.
    func disconnectFromControl() {
        end(CloseReason(side: nil, kind: .disconnected, detail: "disconnect requested on the control socket"))
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
