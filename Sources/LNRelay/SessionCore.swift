import LNRecording
import LNRules
import LNWire

/// What one proxied session is told once, when it starts.
public struct SessionSettings: Sendable {
    /// Process-unique session number.
    public var id: Int
    /// b's node id, hex.
    public var nodeB: String
    /// The route, as recorded in the metadata.
    public var listen: String
    public var upstream: String
    public var lnrrVersion: String
    public var syncMode: SyncMode
    /// Whether sessions are recorded (a recording directory is configured).
    public var records: Bool
    /// Refuse a dialer whose key is not held instead of relaying non-transparently.
    public var requireTransparent: Bool
    /// How long each side's BOLT 8 handshake may take.
    public var handshakeTimeoutNanos: UInt64
    /// Whether a hook is configured.
    public var customMessageHook: Bool
    /// Which message types the hook is asked about (`nil`: none). Called for every relayed message.
    public var hookTypes: (@Sendable (UInt16) -> Bool)?
    /// Above this many bytes waiting in one direction (for the upstream, a hook or a delay), the
    /// sending side is not read: every queue of the session is bounded.
    public var holdLimit: Int
    /// When the session began, in nanoseconds since the epoch (recordings carry wall-clock times).
    public var startedWallNanos: UInt64
    /// Record connections that never complete a's handshake (`--record-failed-handshakes`). Off by
    /// default: anyone can open a TCP connection, so before act three a connection costs a log line
    /// and a counter, not a file and a writer.
    public var recordFailedHandshakes: Bool

    public init(id: Int, nodeB: String, listen: String, upstream: String, lnrrVersion: String, syncMode: SyncMode,
                records: Bool, requireTransparent: Bool, handshakeTimeoutNanos: UInt64, customMessageHook: Bool,
                holdLimit: Int = 256 * 1024, startedWallNanos: UInt64, hookTypes: (@Sendable (UInt16) -> Bool)? = nil,
                recordFailedHandshakes: Bool = false) {
        self.id = id
        self.nodeB = nodeB
        self.listen = listen
        self.upstream = upstream
        self.lnrrVersion = lnrrVersion
        self.syncMode = syncMode
        self.records = records
        self.requireTransparent = requireTransparent
        self.handshakeTimeoutNanos = handshakeTimeoutNanos
        self.customMessageHook = customMessageHook || hookTypes != nil
        // `customMessageHook` alone: the hook sees custom messages (types 32768 and up).
        let customTypes: @Sendable (UInt16) -> Bool = { $0 >= 32768 }
        self.hookTypes = hookTypes ?? (customMessageHook ? customTypes : nil)
        self.holdLimit = holdLimit
        self.startedWallNanos = startedWallNanos
        self.recordFailedHandshakes = recordFailedHandshakes
    }
}

/// The session's timers; a newer `wake` for the same timer replaces the older one.
public enum SessionTimer: Hashable, Sendable {
    /// The current handshake (a's, then b's) must be done by then.
    case handshake
    /// A `delay` in this direction is over.
    case release(Direction)
    /// A `timeout` fault's time is up: the session ends.
    case faultTimeout
    /// A `slow-close` fault's delay is over: the sockets close now.
    case slowClose
}

/// Something that happened to a session, fed to `SessionCore.handle`.
public enum SessionEvent<Payload: RelayPayload> {
    /// A side's channel exists (a: accepted; b: the upstream connection was made).
    case attached(Side, remoteAddress: String?)
    /// A side's BOLT 8 handshake completed; for a, whether its key is in the keyring.
    case handshakeCompleted(Side, remoteNodeID: String, keyHeld: Bool)
    /// A whole decrypted message from a side.
    case received(Payload, from: Side)
    /// The end of one socket read (a batch of `received`).
    case readComplete(Side)
    /// A side's socket can take more bytes, or cannot.
    case writabilityChanged(Side, writable: Bool)
    /// The custom-message hook answered for the message at the head of `direction`.
    case hookAnswered(Direction, HookVerdict, problem: String?)
    /// The hook answered, with injections: for the oldest message of `direction` still waiting for
    /// an answer (a hook answers in the order it was asked, so calls are pipelined).
    case hookDecided(Direction, HookAnswer)
    case timerFired(SessionTimer)
    /// The control socket sends a message (`source` names the method). Check `acceptsInjections` first.
    case inject([UInt8], Direction, source: String)
    /// The control socket asks to end the session.
    case disconnect
    /// The rules were replaced (reload, addrule, delrule).
    case rulesChanged(RuleSet?, file: String?, sha256: String?)
    /// The recording is behind (true) or caught up (false).
    case recorderBackpressure(Bool)
    /// Writing the recording failed: the session ends, so nothing goes unrecorded.
    case recordingFailed(String)
    /// The recording could not be created.
    case recordingUnavailable(String)
    /// A side's channel failed; the driver names the reason.
    case failed(CloseReason)
    /// The upstream could not be dialled.
    case upstreamUnreachable(String)
    /// A side's channel is gone.
    case closed(Side)
    /// The byte budget of a `limit-data` fault at connect (`limitBytes`) toward a side is spent:
    /// its last bytes are written, the connection ends.
    case byteLimitReached(Side)
    /// lnrr is shutting down.
    case shutdown
}

/// How loud a log line is.
public enum SessionLogLevel: Sendable, Equatable { case debug, info, notice, warning, error }

/// Something for `subscribe` clients. Built only when it may interest one; the driver formats it
/// only when someone listens.
public enum SessionNotice<Payload: RelayPayload> {
    case sessionStart(nodeA: String, nodeB: String, transparent: Bool)
    /// A custom message, or a message a rule acted on (`action` says how: dropped, injected).
    case message(Payload, Direction, action: String?)
    case phase(String)
    case rule(Direction, type: UInt16, note: String)
    case sessionEnd(CloseReason)
}

/// What the core asks its driver to do, in order.
public enum SessionAction<Payload: RelayPayload> {
    /// Dial the upstream, as a's own identity (transparent) or as the proxy's.
    case dialUpstream(transparent: Bool)
    /// Write a message to a side's socket (not flushed yet).
    case deliver(Payload, to: Side)
    /// Write the message of the `received` event being handled, as it came: the common case,
    /// without holding another reference to it.
    case deliverReceived(to: Side)
    case flush(Side)
    /// Allow or withhold reads from a side's socket.
    case setReading(Side, Bool)
    /// Create the recording; on failure feed `recordingUnavailable` (the rest of this step is moot).
    case openRecording(SessionMetadata)
    /// Record a message; `batched` ones reach the disk with the next `kickRecorder`.
    case recordMessage(Payload, Direction, atNanos: UInt64, comments: [String], batched: Bool)
    /// Record the message of the `received` event being handled (batched).
    case recordReceived(Direction, atNanos: UInt64, comments: [String])
    case recordEvent(RecordingEvent, atNanos: UInt64)
    /// Wake the recording's writer for the batched records.
    case kickRecorder
    case publish(SessionNotice<Payload>)
    /// Ask the custom-message hook about a message; answer with `hookAnswered`.
    case runHook(peerID: String?, Direction, message: [UInt8])
    /// Feed `timerFired(timer)` at this monotonic time (nanoseconds).
    case wake(SessionTimer, atNanos: UInt64)
    case cancelWake(SessionTimer)
    /// Close a side's socket.
    case close(Side)
    /// Close a side's socket with a TCP RST (SO_LINGER 0), not a FIN (a `reset` fault).
    case reset(Side)
    /// Shape what is written to a side's socket from now on, as the `bandwidth` and `slicer` faults
    /// in effect toward it add up to (`Shaping.isNone`: back to unshaped, queued bytes first, in
    /// order): the driver splits and paces the encrypted bytes, below the BOLT 8 handler.
    case shape(Side, Shaping)
    /// Write at most this many more bytes to a side's socket, handshake acts included (a
    /// `limit-data` fault at connect): the write that crosses the budget is cut there, nothing
    /// after it goes, and the driver feeds `byteLimitReached`.
    case limitBytes(Side, Int)
    case log(SessionLogLevel, String)
    /// Both sides are gone: close the recording, forget the session.
    case finished(CloseReason)
}

/// One proxied session as a state machine without I/O: events in, actions out.
///
/// It owns every decision the proxy makes about a session: the handshake order, the rules (through
/// `RuleStage` and `EffectPlan`, as replay does), the hook, delays, back-pressure, what is recorded
/// and why a session ends. `ProxySession` feeds it NIO's events and carries out its actions; the
/// transcript tests (Tests/LNRelayTests) feed it events directly.
///
/// Ordering is one mechanism per direction: a queue. Messages waiting for the upstream, behind a
/// delay or behind a hook all wait in it, in order, and the head decides when the rest may go.
public struct SessionCore<Payload: RelayPayload> {
    /// Where the session is in its life.
    public enum Lifecycle: Equatable, Sendable {
        /// a has connected; its handshake runs.
        case awaitingA
        /// a is authenticated; b is being dialled and authenticated. a's messages wait.
        case connectingB
        /// Both sides are up; messages flow.
        case relaying
        /// A `blackhole` or `stall` rule wedged the connection: nothing more is relayed.
        case halted(DisconnectKind)
        /// The session is ending for this reason; its sockets are closing.
        case closing(CloseReason)
        /// Both sockets are gone.
        case finished(CloseReason)
    }

    /// One entry of a direction's queue.
    enum Held {
        /// Deliver this message.
        case message(Payload)
        /// Everything behind waits until then (a `delay`).
        case wait(untilNanos: UInt64)
        /// The subject of a hook call: everything behind waits for the verdict.
        case hook(HeldHook)
        /// The connection ends or is wedged here (a rule's `disconnect`).
        case end(DisconnectKind)
        /// A fault (of the named rule) takes effect here.
        case fault(Fault, rule: String)
    }

    struct HeldHook {
        var subject: Payload
        var copies: Int
        /// The record the hook event refers to (-1 when not recording).
        var record: Int
        var started = false
        /// Set when the hook has answered; the entry goes when it reaches the head.
        var answer: HookAnswer?
    }

    enum RecordingState { case notOpen, open, unavailable }

    /// Above this many entries waiting in one direction, its sender is not read (with `holdLimit`).
    public static var holdCountLimit: Int { 1024 }

    public let settings: SessionSettings
    public private(set) var lifecycle: Lifecycle = .awaitingA
    /// a's node id (hex), once its handshake is done.
    public private(set) var nodeA: String?
    /// Whether the upstream sees a's own identity (its key is held).
    public private(set) var transparent = false
    public private(set) var messagesAToB = 0
    public private(set) var messagesBToA = 0
    /// Phases and rules, shared with replay.
    public private(set) var stage: RuleStage

    /// Whether anyone wants `publish` actions (control-socket subscribers); the driver keeps it
    /// current so that a relayed custom message costs no notice nobody reads.
    public var notify = true

    private var recording = RecordingState.notOpen
    private var rulesFile: String?
    private var rulesSHA256: String?
    /// Sides whose channel exists.
    private var channels: Set<Side> = []
    private var aAddress: String?
    private var writableA = true
    private var writableB = true
    private var readingA = true
    private var readingB = true
    private var recorderBehind = false
    /// One ordered queue per direction, and the bytes each holds.
    private var queueAToB = HeldQueue<Held>()
    private var queueBToA = HeldQueue<Held>()
    private var heldBytesAToB = 0
    private var heldBytesBToA = 0
    /// Messages recorded so far: the index the next one gets (hook events refer to it).
    public private(set) var recordedMessages = 0
    /// Records of messages that arrived while b was being dialled: written when b is up (as they
    /// were) or when the session ends first (as not delivered), so a failed dial does not leave a
    /// held `init` recorded as delivered.
    private var heldRecords: [HeldRecord] = []

    struct HeldRecord {
        var message: Payload
        var direction: Direction
        var atNanos: UInt64
        var comments: [String]
    }
    private let startedMonotonicNanos: UInt64
    /// `limit-data` faults: bytes each direction may still write (BOLT 8 frames), `Int.max` when unlimited.
    private var limitAToB = Int.max
    private var limitBToA = Int.max
    /// A `reset` fault: the sockets close with RST.
    private var closesWithReset = false
    /// A `slow-close` fault: the sockets close this long after the session ends.
    private var slowCloseNanos: UInt64 = 0
    /// A `timeout` fault's timer is set.
    private var timeoutArmed = false
    /// The `bandwidth` and `slicer` faults in effect toward each side, in the order they took
    /// effect, with their rules: what a side's `Shaping` is made of, and what is undone when a
    /// rule is no longer in force.
    private var shapingTowardA: [(rule: String, fault: Fault)] = []
    private var shapingTowardB: [(rule: String, fault: Fault)] = []
    /// `fault` events of faults that took effect at connect, before the recording existed (it
    /// opens after a's act three): written, with their own times, once it opens. At most one per
    /// connect fault and side.
    private var eventsBeforeRecording: [(RecordingEvent, atNanos: UInt64)] = []
    /// A `limit-data` fault at connect: the bytes allowed toward each side, for the close reason.
    private var connectLimits: [Side: Int] = [:]

    /// A session whose a has just connected, at monotonic time `now`.
    public init(settings: SessionSettings, rules: RuleSet?, rulesFile: String?, rulesSHA256: String?, now: UInt64) {
        self.settings = settings
        self.stage = RuleStage(rules: rules, nodeB: settings.nodeB)
        self.rulesFile = rulesFile
        self.rulesSHA256 = rulesSHA256
        self.startedMonotonicNanos = now
    }

    // MARK: Queries

    /// Whether control-socket injections are accepted (both sides up, relaying).
    public var acceptsInjections: Bool {
        if case .relaying = lifecycle { return true }
        return false
    }

    /// Both sides are up and the session has not ended (a halted connection is still connected).
    public var isConnected: Bool {
        switch lifecycle {
        case .relaying, .halted: true
        default: false
        }
    }

    /// Why the session ended, once it has.
    public var closeReason: CloseReason? {
        switch lifecycle {
        case .closing(let r), .finished(let r): r
        default: nil
        }
    }

    /// Whether the recording is open.
    public var isRecording: Bool { recording == .open }

    /// Whether a completed its handshake (act three): sessions that never did are counted, not recorded.
    public var authenticated: Bool { nodeA != nil }

    /// Whether a control-socket injection towards `direction`'s receiver may be taken now: both sides
    /// up, the receiver's socket writable and the direction's queue within its bounds. Otherwise the
    /// control socket answers busy instead of buffering without bound.
    public func mayInject(_ direction: Direction) -> Bool {
        guard acceptsInjections else { return false }
        let writable = direction == .aToB ? writableB : writableA
        let bytes = direction == .aToB ? heldBytesAToB : heldBytesBToA
        let count = direction == .aToB ? queueAToB.count : queueBToA.count
        return writable && bytes <= settings.holdLimit && count <= Self.holdCountLimit
    }

    // MARK: Events

    /// Handles one event at monotonic time `now`, appending the actions it causes to `actions`.
    public mutating func handle(_ event: SessionEvent<Payload>, now: UInt64, into actions: inout [SessionAction<Payload>]) {
        switch event {
        case .received(let message, let side):
            received(message, from: side, now: now, into: &actions)
            return
        case .readComplete(let side):
            if recording == .open { actions.append(.kickRecorder) }
            if releases(side.sending) { actions.append(.flush(side.other)) }
        case .writabilityChanged(let side, let writable):
            if side == .a { writableA = writable } else { writableB = writable }
        case .attached(let side, let address):
            attached(side, address: address, now: now, &actions)
        case .handshakeCompleted(let side, let remote, let keyHeld):
            if side == .a { aAuthenticated(remote, keyHeld: keyHeld, now: now, &actions) } else { bAuthenticated(now: now, &actions) }
        case .hookAnswered(let direction, let verdict, let problem):
            hookAnswered(direction, HookAnswer(verdict, problem: problem), now: now, &actions)
        case .hookDecided(let direction, let answer):
            hookAnswered(direction, answer, now: now, &actions)
        case .timerFired(.handshake):
            switch lifecycle {
            case .awaitingA:
                end(CloseReason(side: .a, kind: .handshakeFailure,
                                detail: "a did not complete its handshake within \(settings.handshakeTimeoutNanos / 1_000_000) ms"), now: now, &actions)
            case .connectingB:
                end(CloseReason(side: .b, kind: .handshakeFailure,
                                detail: "b did not answer the handshake within \(settings.handshakeTimeoutNanos / 1_000_000) ms"), now: now, &actions)
            default:
                break
            }
        case .timerFired(.faultTimeout):
            end(CloseReason(side: nil, kind: .disconnected, detail: "fault timeout: the connection was silent, then closed"), now: now, &actions)
        case .timerFired(.slowClose):
            for side in [Side.a, .b] where channels.contains(side) { actions.append(closesWithReset ? .reset(side) : .close(side)) }
        case .timerFired(.release(let direction)):
            pump(direction, now: now, &actions)
            if closeReason == nil { actions.append(.flush(direction.receiver)) }
        case .inject(let message, let direction, let source):
            guard mayInject(direction) else { break }
            // The receiver sees it, so the phases do (the rules' own injections go through the stage).
            message.withUnsafeBytes { _ = stage.observe($0, direction: direction) }
            injected(message, direction, notes: ["injected by \(source)"], now: now, &actions)
            pump(direction, now: now, &actions)
            actions.append(.flush(direction.receiver))
        case .disconnect:
            end(CloseReason(side: nil, kind: .disconnected, detail: "disconnect requested on the control socket"), now: now, &actions)
        case .rulesChanged(let rules, let file, let sha256):
            let reloaded = stage.engine != nil || rulesFile != nil
            stage.setRules(rules)
            rulesFile = file
            rulesSHA256 = sha256
            if reloaded, recording == .open {
                var fields: [String: RecordingEventValue] = ["rules": .int(rules?.rules.count ?? 0)]
                if let file { fields["file"] = .string(file) }
                if let sha256 { fields["sha256"] = .string(sha256) }
                recordEvent(.rulesReloaded, fields, now: now, &actions)
            }
            if closeReason == nil { undoShaping(inForce: Set(rules?.rules.map(\.name) ?? []), now: now, &actions) }
        case .recorderBackpressure(let behind):
            guard behind != recorderBehind else { break }
            recorderBehind = behind
            recordEvent(.backpressure, ["on": .bool(behind), "cause": .string("recording")], now: now, &actions)
        case .recordingFailed(let why):
            end(CloseReason(side: nil, kind: .error, detail: "recording failed: \(why)"), now: now, &actions)
        case .recordingUnavailable(let why):
            recording = .unavailable
            actions.append(.log(.error, "cannot create a recording: \(why); ending the session so nothing goes unrecorded"))
            if closeReason != nil {
                // The session was already ending when the recording was opened to note why: the
                // driver dropped the rest of that step, the closes included, so they come again.
                for side in [Side.a, .b] where channels.contains(side) { actions.append(.close(side)) }
                finishIfDone(&actions)
            } else {
                end(CloseReason(side: nil, kind: .error, detail: "recording could not be created: \(why)"), now: now, &actions)
            }
        case .failed(let reason):
            end(reason, now: now, &actions)
        case .upstreamUnreachable(let detail):
            end(CloseReason(side: .b, kind: .upstreamUnreachable, detail: detail), now: now, &actions)
        case .closed(let side):
            guard channels.remove(side) != nil else { break }
            if closeReason == nil {
                end(CloseReason(side: side, kind: .eof, detail: side == .a ? "a closed the connection" : "b closed the connection"),
                    now: now, &actions)
            }
            finishIfDone(&actions)
        case .shutdown:
            end(CloseReason(side: nil, kind: .shutdown, detail: "lnrr is shutting down"), now: now, &actions)
        case .byteLimitReached(let side):
            let bytes = connectLimits[side].map { "\($0) bytes" } ?? "the byte limit"
            end(CloseReason(side: nil, kind: .disconnected,
                            detail: "fault limit-data at connect: \(bytes) toward \(side) were written, handshake included"), now: now, &actions)
        }
        updateReading(&actions)
    }

    // MARK: Handshakes

    private mutating func attached(_ side: Side, address: String?, now: UInt64, _ actions: inout [SessionAction<Payload>]) {
        if closeReason != nil {
            // The upstream connection came up after the session ended.
            actions.append(.close(side))
            return
        }
        channels.insert(side)
        if side == .a { aAddress = address }
        actions.append(.wake(.handshake, atNanos: now + settings.handshakeTimeoutNanos))
        // `at: connect` faults: in place before lnrr writes its first byte to this side (act two
        // toward a, act one toward b).
        guard let rules = stage.engine?.rules else { return }
        let direction: Direction = side == .a ? .bToA : .aToB
        for (rule, fault) in rules.connectFaults(direction) {
            applyFault(fault, rule: rule, direction, atConnect: true, now: now, &actions)
            if closeReason != nil { return }
        }
    }

    private mutating func aAuthenticated(_ remote: String, keyHeld: Bool, now: UInt64, _ actions: inout [SessionAction<Payload>]) {
        guard case .awaitingA = lifecycle else { return }
        nodeA = remote
        stage.nodeA = remote
        if !keyHeld && settings.requireTransparent {
            openRecording(now: now, &actions)
            recordEvent(.handshake, ["side": .string("a"), "node_id": .string(remote)], now: now, &actions)
            end(CloseReason(side: .a, kind: .refused,
                            detail: "no key for a (\(remote)) in the keyring and --require-transparent is set"), now: now, &actions)
            return
        }
        transparent = keyHeld
        openRecording(now: now, &actions)
        recordEvent(.handshake, ["side": .string("a"), "node_id": .string(remote), "transparent": .bool(transparent)], now: now, &actions)
        actions.append(.log(.info, "a connected: \(remote), transparent: \(transparent)"))
        actions.append(.publish(.sessionStart(nodeA: remote, nodeB: settings.nodeB, transparent: transparent)))
        lifecycle = .connectingB
        actions.append(.dialUpstream(transparent: transparent))
    }

    private mutating func bAuthenticated(now: UInt64, _ actions: inout [SessionAction<Payload>]) {
        guard case .connectingB = lifecycle else { return }
        actions.append(.cancelWake(.handshake))
        lifecycle = .relaying
        // Recorded in the order they came, before b's handshake as before; they are delivered below.
        for held in heldRecords {
            actions.append(.recordMessage(held.message, held.direction, atNanos: held.atNanos, comments: held.comments, batched: false))
        }
        heldRecords.removeAll()
        recordEvent(.handshake, ["side": .string("b"), "node_id": .string(settings.nodeB)], now: now, &actions)
        // What a sent meanwhile goes now, in order.
        pump(.aToB, now: now, &actions)
        actions.append(.flush(.b))
    }

    // MARK: Relaying

    /// The same as `handle(.received(message, from: side), ...)`, for drivers that want to pass the
    /// message without wrapping it (the per-message path).
    public mutating func received(_ message: Payload, from side: Side, now: UInt64, into actions: inout [SessionAction<Payload>]) {
        if relay(message, from: side, now: now, &actions) { updateReading(&actions) }
    }

    /// Relays one message; false when it took the fast path, which changes no queue, so whether each
    /// side may be read stays as it was.
    private mutating func relay(_ message: Payload, from side: Side, now: UInt64, _ actions: inout [SessionAction<Payload>]) -> Bool {
        if closeReason != nil { return true }
        let direction = side.sending
        if direction == .aToB { messagesAToB += 1 } else { messagesBToA += 1 }
        let type = message.messageType ?? 0
        if case .halted(let kind) = lifecycle {
            let observation = message.withBytes { stage.observe($0, direction: direction) }
            publishChanges(observation, &actions)
            if type >= 32768 { actions.append(.publish(.message(message, direction, action: nil))) }
            if recording == .open {
                let comments = phaseComments(observation) + ["not delivered: the connection is \(kind.rawValue) by a rule", DeliveryNote.none.comment]
                recordMessage(message, direction, now: now, comments: comments, batched: true, &actions)
            }
            return true
        }
        let plan = message.withBytes { stage.process($0, direction: direction) }
        if plan.isPlain {
            if notify {
                if type >= 32768 { actions.append(.publish(.message(message, direction, action: nil))) }
                publishChanges(plan.observation, &actions)
            }
            var record = -1
            if recording == .open {
                if case .connectingB = lifecycle {
                    record = recordMessage(message, direction, now: now, comments: phaseComments(plan.observation), batched: true, &actions)
                } else {
                    actions.append(.recordReceived(direction, atNanos: wallNanos(now), comments: phaseComments(plan.observation)))
                    record = recordedMessages
                    recordedMessages += 1
                }
            }
            if let asks = settings.hookTypes, asks(type) {
                enqueueHook(HeldHook(subject: message, copies: 1, record: record), direction, &actions)
            } else if queueIsEmpty(direction) && releases(direction) && (direction == .aToB ? limitAToB : limitBToA) == Int.max {
                // The common case: nothing waits in this direction, so the message goes at once
                // (a `limit-data` fault sends it through the queue, which counts the bytes).
                actions.append(.deliverReceived(to: side.other))
                return false
            } else {
                enqueue(.message(message), message.byteCount, direction)
            }
            pump(direction, now: now, &actions)
            return true
        }
        apply(plan, to: message, direction: direction, type: type, now: now, &actions)
        return true
    }

    /// Carries out a plan whose rules fired: records, publishes and queues its steps in order.
    private mutating func apply(_ plan: EffectPlan, to message: Payload, direction: Direction, type: UInt16, now: UInt64,
                                _ actions: inout [SessionAction<Payload>]) {
        let effects = plan.effects
        if type >= 32768 || effects.delivery == .none {
            actions.append(.publish(.message(message, direction, action: effects.delivery == .none ? "dropped" : nil)))
        }
        publishChanges(plan.observation, &actions)
        for note in effects.annotations { actions.append(.publish(.rule(direction, type: type, note: note))) }
        var injectedTo: Set<Direction> = []
        for step in plan.steps {
            switch step {
            case .inject(let injected):
                self.injected(injected.message, injected.direction,
                              notes: injected.note.map { [$0] } ?? effects.annotations.filter { $0.contains("injected") }, now: now, &actions)
                injectedTo.insert(injected.direction)
            case .fault(let fault, let rule):
                enqueue(.fault(fault, rule: rule), 0, direction)
            case .delay(let ms):
                enqueue(.wait(untilNanos: now + UInt64(ms) * 1_000_000), 0, direction)
            case .deliver(let delivery, let copies):
                var subject = message
                var record = -1
                if recording == .open {
                    // `delivery:` notes let a replay tell what the receiver got (docs/recording-format.md).
                    var comments = phaseComments(plan.observation) + effects.annotations
                    switch delivery {
                    case .none: comments.append(DeliveryNote.none.comment)
                    case .replacement: comments.append(DeliveryNote.replaced.comment)
                    case .original: if copies == 2 { comments.append(DeliveryNote.twice.comment) }
                    }
                    record = recordMessage(message, direction, now: now, comments: comments, batched: true, &actions)
                }
                if case .replacement(let bytes) = delivery {
                    subject = Payload(bytes: bytes)
                    if recording == .open {
                        let note: DeliveryNote = copies == 2 ? .replacementTwice : .replacement
                        record = recordMessage(subject, direction, now: now, comments: [note.comment, "replacement for #\(record)"],
                                               batched: false, &actions)
                    }
                }
                guard copies > 0 else { break }
                // Rules run first: a custom message the rules drop never reaches the hook.
                if let asks = settings.hookTypes, asks(type) {
                    enqueueHook(HeldHook(subject: subject, copies: copies, record: record), direction, &actions)
                } else {
                    for _ in 0..<copies { enqueue(.message(subject), subject.byteCount, direction) }
                }
            case .disconnect(let kind):
                enqueue(.end(kind), 0, direction)
            }
        }
        pump(direction, now: now, &actions)
        if closeReason == nil, injectedTo.contains(direction.reversed) {
            pump(direction.reversed, now: now, &actions)
            actions.append(.flush(direction.sender))
        }
    }

    /// Records, publishes and queues a message lnrr sends of its own.
    private mutating func injected(_ message: [UInt8], _ direction: Direction, notes: [String], now: UInt64,
                                   _ actions: inout [SessionAction<Payload>]) {
        let payload = Payload(bytes: message)
        if recording == .open {
            recordMessage(payload, direction, now: now, comments: ["injected by lnrr", DeliveryNote.injected.comment] + notes,
                          batched: false, &actions)
        }
        actions.append(.publish(.message(payload, direction, action: "injected")))
        enqueue(.message(payload), message.count, direction)
    }

    /// Whether `direction`'s queue may deliver now.
    private func releases(_ direction: Direction) -> Bool {
        if case .relaying = lifecycle { return true }
        return false
    }

    private func queueIsEmpty(_ direction: Direction) -> Bool {
        direction == .aToB ? queueAToB.isEmpty : queueBToA.isEmpty
    }

    private mutating func enqueue(_ held: Held, _ bytes: Int, _ direction: Direction) {
        if direction == .aToB {
            queueAToB.append(held)
            heldBytesAToB += bytes
        } else {
            queueBToA.append(held)
            heldBytesBToA += bytes
        }
    }

    private func head(_ direction: Direction) -> Held? {
        direction == .aToB ? queueAToB.first : queueBToA.first
    }

    private mutating func popHead(_ direction: Direction) -> Held? {
        let held = direction == .aToB ? queueAToB.popFirst() : queueBToA.popFirst()
        let bytes: Int
        switch held {
        case .message(let p): bytes = p.byteCount
        case .hook(let h): bytes = h.subject.byteCount
        default: bytes = 0
        }
        if direction == .aToB { heldBytesAToB -= bytes } else { heldBytesBToA -= bytes }
        return held
    }

    private mutating func putBack(_ held: [Held], bytes: Int, _ direction: Direction) {
        if direction == .aToB {
            queueAToB.prepend(held)
            heldBytesAToB += bytes
        } else {
            queueBToA.prepend(held)
            heldBytesBToA += bytes
        }
    }

    /// Delivers from the head of `direction`'s queue until something there must wait.
    private mutating func pump(_ direction: Direction, now: UInt64, _ actions: inout [SessionAction<Payload>]) {
        while releases(direction), let held = head(direction) {
            switch held {
            case .message(let message):
                // A `limit-data` fault: the frame that would pass the limit is not written; the connection closes.
                if (direction == .aToB ? limitAToB : limitBToA) != Int.max, !spendLimit(message.byteCount, direction) {
                    actions.append(.flush(direction.receiver))
                    end(CloseReason(side: nil, kind: .disconnected, detail: "fault limit-data: the byte limit toward \(direction.receiver) was reached"),
                        now: now, &actions)
                    return
                }
                _ = popHead(direction)
                actions.append(.deliver(message, to: direction.receiver))
            case .fault(let fault, let rule):
                _ = popHead(direction)
                applyFault(fault, rule: rule, direction, atConnect: false, now: now, &actions)
                if closeReason != nil { return }
                if case .halted = lifecycle { return }
            case .wait(let until):
                guard now >= until else {
                    actions.append(.wake(.release(direction), atNanos: until))
                    return
                }
                _ = popHead(direction)
            case .hook(let hook):
                // Asked when queued; waits here for its answer, holding everything behind.
                guard let answer = hook.answer else { return }
                _ = popHead(direction)
                applyHook(hook, answer, direction, now: now, &actions)
            case .end(let kind):
                _ = popHead(direction)
                // The messages before it are written first.
                actions.append(.flush(direction.receiver))
                if kind.closesConnection {
                    end(CloseReason(side: nil, kind: .disconnected, detail: "rule disconnect \(kind.rawValue) (\(kind.symbol))"), now: now, &actions)
                } else {
                    halt(kind, now: now, &actions)
                }
                return
            }
        }
    }

    /// Takes a frame of a `bytes`-byte message off `direction`'s limit; false when it does not fit.
    private mutating func spendLimit(_ bytes: Int, _ direction: Direction) -> Bool {
        // On the wire: 2-byte length + 16-byte MAC, the message, its 16-byte MAC.
        let frame = bytes + 34
        if direction == .aToB {
            guard frame <= limitAToB else { return false }
            limitAToB -= frame
        } else {
            guard frame <= limitBToA else { return false }
            limitBToA -= frame
        }
        return true
    }

    /// A fault's turn has come in its direction's queue, or a connection starts (`atConnect`): it
    /// takes effect, and the recording says so.
    private mutating func applyFault(_ fault: Fault, rule: String, _ direction: Direction, atConnect: Bool, now: UInt64,
                                     _ actions: inout [SessionAction<Payload>]) {
        var fields: [String: RecordingEventValue] = [
            "fault": .string(fault.name), "direction": .string(direction.rawValue), "detail": .string(fault.description),
            "rule": .string(rule),
        ]
        if atConnect { fields["at"] = .string("connect") }
        if atConnect && recording == .notOpen && settings.records {
            // Written first once the recording opens (after a's act three, or at the end).
            eventsBeforeRecording.append((RecordingEvent(.fault, fields: fields), wallNanos(now)))
        } else {
            recordEvent(.fault, fields, now: now, &actions)
        }
        actions.append(.log(.info, "fault \(fault.description) toward \(direction.receiver)\(atConnect ? " at connect" : "") (rule \"\(rule)\")"))
        switch fault {
        case .bandwidth, .slicer:
            let side = direction.receiver
            // One entry per rule and kind: a rule that fires on every message retunes its entry
            // instead of growing the list (bounded by the rules in force, twice).
            func retune(_ list: inout [(rule: String, fault: Fault)]) {
                list.removeAll { $0.rule == rule && $0.fault.name == fault.name }
                list.append((rule, fault))
            }
            if side == .a { retune(&shapingTowardA) } else { retune(&shapingTowardB) }
            actions.append(.shape(side, shaping(toward: side)))
        case .limitData(let bytes) where atConnect:
            // Every byte counts, handshake acts included: the driver cuts the stream (even inside
            // an act or a frame header) where the budget ends.
            connectLimits[direction.receiver] = bytes
            actions.append(.limitBytes(direction.receiver, bytes))
        case .reset:
            closesWithReset = true
            actions.append(.flush(direction.receiver))
            end(CloseReason(side: nil, kind: .disconnected, detail: "fault reset\(atConnect ? " at connect" : ""): closed with RST"), now: now, &actions)
        case .slowClose(let ms):
            slowCloseNanos = UInt64(ms) * 1_000_000
        case .timeout(let ms):
            actions.append(.flush(direction.receiver))
            // Like `blackhole`: nothing more is relayed or read; then the sockets close.
            lifecycle = .halted(.blackhole)
            dropQueues(&actions)
            if ms > 0 {
                timeoutArmed = true
                actions.append(.wake(.faultTimeout, atNanos: now + UInt64(ms) * 1_000_000))
            }
            updateReading(&actions)
        case .limitData(let bytes):
            if direction == .aToB { limitAToB = bytes } else { limitBToA = bytes }
        }
    }

    /// What the shaping faults in effect toward `side` add up to.
    private func shaping(toward side: Side) -> Shaping {
        Shaping((side == .a ? shapingTowardA : shapingTowardB).map(\.fault), seed: stage.engine?.rules.seed ?? 0)
    }

    /// The rules changed: shaping that came from a rule no longer in force (delfault, delrule, a
    /// reload without it) is undone, leaving what the remaining rules set; each removal is a
    /// `fault` event with detail `removed`.
    private mutating func undoShaping(inForce names: Set<String>, now: UInt64, _ actions: inout [SessionAction<Payload>]) {
        for side in [Side.a, .b] {
            let applied = side == .a ? shapingTowardA : shapingTowardB
            let kept = applied.filter { names.contains($0.rule) }
            guard kept.count != applied.count else { continue }
            if side == .a { shapingTowardA = kept } else { shapingTowardB = kept }
            let direction: Direction = side == .a ? .bToA : .aToB
            for (rule, fault) in applied where !names.contains(rule) {
                recordEvent(.fault, ["fault": .string(fault.name), "direction": .string(direction.rawValue),
                                     "detail": .string("removed"), "rule": .string(rule)], now: now, &actions)
                actions.append(.log(.info, "fault \(fault.description) toward \(side) removed: rule \"\(rule)\" is no longer in force"))
            }
            actions.append(.shape(side, shaping(toward: side)))
        }
    }

    /// A `blackhole` or `stall` rule: nothing more is relayed either way; blackhole stops reading too.
    private mutating func halt(_ kind: DisconnectKind, now: UInt64, _ actions: inout [SessionAction<Payload>]) {
        lifecycle = .halted(kind)
        dropQueues(&actions)
        recordEvent(.ruleHalt, ["kind": .string(kind.rawValue)], now: now, &actions)
    }

    private mutating func dropQueues(_ actions: inout [SessionAction<Payload>]) {
        queueAToB.removeAll()
        queueBToA.removeAll()
        heldBytesAToB = 0
        heldBytesBToA = 0
        actions.append(.cancelWake(.release(.aToB)))
        actions.append(.cancelWake(.release(.bToA)))
    }

    // MARK: Hook

    /// Queues a message for the hook and asks at once: the next message is asked about before
    /// this one is answered (pipelining); answers are applied in queue order by `pump`.
    private mutating func enqueueHook(_ hook: HeldHook, _ direction: Direction, _ actions: inout [SessionAction<Payload>]) {
        var hook = hook
        hook.started = true
        enqueue(.hook(hook), hook.subject.byteCount, direction)
        actions.append(.runHook(peerID: direction == .aToB ? nodeA : settings.nodeB, direction, message: hook.subject.bytes))
    }

    private mutating func hookAnswered(_ direction: Direction, _ answer: HookAnswer, now: UInt64,
                                       _ actions: inout [SessionAction<Payload>]) {
        guard closeReason == nil else { return }
        func waiting(_ held: Held) -> Bool {
            if case .hook(let h) = held { return h.answer == nil }
            return false
        }
        func set(_ held: inout Held) {
            if case .hook(var h) = held { h.answer = answer; held = .hook(h) }
        }
        let found = direction == .aToB ? queueAToB.updateFirst(where: waiting, set) : queueBToA.updateFirst(where: waiting, set)
        guard found else { return }
        // Messages that waited behind answered ones go now, flushed together.
        pump(direction, now: now, &actions)
        actions.append(.flush(direction.receiver))
    }

    /// Carries out a hook's answer for a message that reached the head of its queue: what it
    /// delivers instead (nothing, itself, a replacement, with injections around) goes back in front.
    private mutating func applyHook(_ hook: HeldHook, _ answer: HookAnswer, _ direction: Direction, now: UInt64,
                                    _ actions: inout [SessionAction<Payload>]) {
        let problem = answer.problem
        if let problem { actions.append(.log(.warning, "hook ignored (message continues): \(problem)")) }
        let by = answer.by.map { " by \($0)" } ?? " by the custommsg hook"
        var fields: [String: RecordingEventValue] = ["direction": .string(direction.rawValue)]
        if hook.record >= 0 { fields["message"] = .int(hook.record) }
        if let who = answer.by { fields["by"] = .string(who) }
        var front: [Held] = []
        var bytes = 0
        func inject(_ message: [UInt8], _ note: String) {
            let payload = Payload(bytes: message)
            if recording == .open {
                recordMessage(payload, direction, now: now, comments: ["injected by lnrr", DeliveryNote.injected.comment, note],
                              batched: false, &actions)
            }
            actions.append(.publish(.message(payload, direction, action: "injected")))
            front.append(.message(payload))
            bytes += message.count
        }
        for message in answer.injectBefore { inject(message, "injected before #\(hook.record)\(by)") }
        var subject: Payload?
        switch answer.verdict {
        case .continue:
            fields["result"] = .string(problem.map { "continue (hook ignored: \($0))" } ?? "continue")
            subject = hook.subject
        case .drop:
            fields["result"] = .string("drop")
        case .replace(let replacement):
            fields["result"] = .string("replace")
            fields["payload"] = .string(HexString.encode(replacement))
            subject = Payload(bytes: replacement)
            if recording == .open {
                recordMessage(subject!, direction, now: now,
                              comments: [DeliveryNote.replacement.comment, "replacement for #\(hook.record)\(by)"],
                              batched: false, &actions)
            }
        }
        if let subject {
            front += Array(repeating: .message(subject), count: hook.copies)
            bytes += subject.byteCount * hook.copies
        }
        recordEvent(.hook, fields, now: now, &actions)
        for message in answer.injectAfter { inject(message, "injected after #\(hook.record)\(by)") }
        putBack(front, bytes: bytes, direction)
    }

    // MARK: Back-pressure

    /// Whether `side`'s socket may be read now.
    public func mayRead(_ side: Side) -> Bool {
        if recorderBehind { return false }
        if case .halted(.blackhole) = lifecycle { return false }
        // A slow upstream, hook or delay holds this direction: stop reading before the queue grows large.
        if (side == .a ? heldBytesAToB : heldBytesBToA) > settings.holdLimit { return false }
        // Many tiny messages behind a slow hook cost more than their bytes: bound the count too.
        if (side == .a ? queueAToB.count : queueBToA.count) > Self.holdCountLimit { return false }
        switch lifecycle {
        case .awaitingA, .connectingB: return true  // the handshakes must be read; a's messages queue
        default: return side == .a ? writableB : writableA
        }
    }

    private mutating func updateReading(_ actions: inout [SessionAction<Payload>]) {
        let a = mayRead(.a), b = mayRead(.b)
        if a != readingA { readingA = a; actions.append(.setReading(.a, a)) }
        if b != readingB { readingB = b; actions.append(.setReading(.b, b)) }
    }

    // MARK: Endings

    /// Ends the session for `reason`: records it, closes both sides. The first reason wins.
    private mutating func end(_ reason: CloseReason, now: UInt64, _ actions: inout [SessionAction<Payload>]) {
        guard closeReason == nil else { return }
        if authenticated || settings.recordFailedHandshakes {
            openRecording(now: now, &actions)
        }
        // Messages held for b that never went: recorded, as not delivered.
        for held in heldRecords {
            var comments = held.comments.filter { DeliveryNote(comments: [$0]) == nil }
            comments += ["not delivered: the session ended before the upstream was up", DeliveryNote.none.comment]
            actions.append(.recordMessage(held.message, held.direction, atNanos: held.atNanos, comments: comments, batched: false))
        }
        heldRecords.removeAll()
        var fields: [String: RecordingEventValue] = ["reason": .string(reason.kind.rawValue)]
        if let side = reason.side { fields["by"] = .string(side.rawValue) }
        if !reason.detail.isEmpty { fields["detail"] = .string(reason.detail) }
        recordEvent(.close, fields, now: now, &actions)
        actions.append(.publish(.sessionEnd(reason)))
        if !authenticated && !settings.recordFailedHandshakes {
            // The one trace a connection that never authenticated leaves (and the driver's counter).
            actions.append(.log(.notice, "connection from \(aAddress ?? "unknown") ended before its handshake completed (not recorded): \(reason)"))
        } else {
            actions.append(.log(reason.kind == .eof || reason.kind == .shutdown ? .info : .notice, "session ended: \(reason)"))
        }
        lifecycle = .closing(reason)
        dropQueues(&actions)
        actions.append(.cancelWake(.handshake))
        if timeoutArmed { actions.append(.cancelWake(.faultTimeout)) }
        if slowCloseNanos > 0 {
            // A `slow-close` fault: the FIN (or RST) goes out later; the recording is closed as usual.
            actions.append(.wake(.slowClose, atNanos: now + slowCloseNanos))
        } else {
            for side in [Side.a, .b] where channels.contains(side) { actions.append(closesWithReset ? .reset(side) : .close(side)) }
        }
        finishIfDone(&actions)
    }

    private mutating func finishIfDone(_ actions: inout [SessionAction<Payload>]) {
        guard case .closing(let reason) = lifecycle, channels.isEmpty else { return }
        lifecycle = .finished(reason)
        actions.append(.finished(reason))
    }

    // MARK: Recording

    private mutating func openRecording(now: UInt64, _ actions: inout [SessionAction<Payload>]) {
        guard settings.records, recording == .notOpen else { return }
        recording = .open
        actions.append(.openRecording(SessionMetadata(
            lnrrVersion: settings.lnrrVersion, sessionID: settings.id, startedNanos: settings.startedWallNanos,
            nodeA: nodeA, nodeB: settings.nodeB, listen: settings.listen, upstream: settings.upstream,
            transparent: transparent, syncMode: settings.syncMode, rulesFile: rulesFile, rulesSHA256: rulesSHA256)))
        actions.append(.recordEvent(RecordingEvent(.sessionStart, fields: ["a_address": .string(aAddress ?? "unknown")]),
                                    atNanos: settings.startedWallNanos))
        for (event, at) in eventsBeforeRecording { actions.append(.recordEvent(event, atNanos: at)) }
        eventsBeforeRecording.removeAll()
    }

    /// Wall-clock time for the recording: the session's start plus monotonic time since.
    private func wallNanos(_ now: UInt64) -> UInt64 {
        settings.startedWallNanos &+ (now &- startedMonotonicNanos)
    }

    @discardableResult
    private mutating func recordMessage(_ message: Payload, _ direction: Direction, now: UInt64, comments: [String], batched: Bool,
                                        _ actions: inout [SessionAction<Payload>]) -> Int {
        if case .connectingB = lifecycle {
            // Whether it is delivered is not known until b is up: see `heldRecords`.
            heldRecords.append(HeldRecord(message: message, direction: direction, atNanos: wallNanos(now), comments: comments))
        } else {
            actions.append(.recordMessage(message, direction, atNanos: wallNanos(now), comments: comments, batched: batched))
        }
        recordedMessages += 1
        return recordedMessages - 1
    }

    private mutating func recordEvent(_ kind: SessionEventKind, _ fields: [String: RecordingEventValue], now: UInt64,
                                      _ actions: inout [SessionAction<Payload>]) {
        guard recording == .open else { return }
        actions.append(.recordEvent(RecordingEvent(kind, fields: fields), atNanos: wallNanos(now)))
    }

    private func phaseComments(_ observation: PhaseObservation) -> [String] {
        observation.changes.isEmpty ? [] : observation.changes.map { "phase \($0.description)" }
    }

    private func publishChanges(_ observation: PhaseObservation, _ actions: inout [SessionAction<Payload>]) {
        for change in observation.changes { actions.append(.publish(.phase(change.description))) }
    }
}

extension Direction {
    /// The side that receives messages going this way.
    public var receiver: Side { self == .aToB ? .b : .a }
    /// The side that sends them.
    public var sender: Side { self == .aToB ? .a : .b }
}
