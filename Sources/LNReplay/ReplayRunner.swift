import LNRelay
import LNRules
import LNWire

/// When replayed messages are sent.
public enum ReplayTiming: Sendable, Equatable, CustomStringConvertible {
    /// Keep the recorded gap between a step and the one before it.
    case recorded
    /// Send as soon as the expected input has arrived.
    case fast
    /// The recorded gaps multiplied by this factor (`scale:0.5` is twice as fast).
    case scaled(Double)

    /// Parses `recorded`, `fast` or `scale:X`.
    public init(parsing text: String) throws {
        switch text {
        case "recorded": self = .recorded
        case "fast": self = .fast
        default:
            guard text.hasPrefix("scale:"), let x = Double(text.dropFirst(6)), x >= 0, x.isFinite else {
                throw ReplayError.usage("--timing must be recorded, fast or scale:X with X a number of 0 or more (got '\(text)')")
            }
            self = .scaled(x)
        }
    }

    /// How long to wait for a recorded gap of `nanos`.
    public func wait(forRecordedGap nanos: UInt64) -> UInt64 {
        switch self {
        case .fast: 0
        case .recorded: nanos
        case .scaled(let x): UInt64(Double(nanos) * x)
        }
    }

    public var description: String {
        switch self {
        case .recorded: "recorded"
        case .fast: "fast"
        case .scaled(let x): "scale:\(x)"
        }
    }
}

/// Which recorded orders a replay insists on.
public enum ReplayOrder: String, Sendable, CaseIterable {
    /// Only where the protocol orders: connection-level messages a node sends on its own schedule
    /// (peer storage, gossip and gossip queries, pings, `warning` for the whole connection) are
    /// matched within a window of steps wherever they arrive, and reported `reordered`; messages
    /// of one channel keep their recorded order, but two channels' messages may interleave
    /// differently; messages of the whole connection keep their place among all others.
    case `protocol`
    /// Every message of the live node in exactly the recorded order.
    case strict
}

/// Everything a replay is asked to do, apart from where to connect.
public struct ReplayOptions: Sendable {
    public var side: Side
    public var matcher: MessageMatcher
    public var timing: ReplayTiming
    /// How long to wait for each expected message (and for an expected close).
    public var timeoutNanos: UInt64
    /// Types neither sent nor expected; pings among them are answered by lnrr itself.
    public var ignore: TypeFilter
    public var rules: RuleSet?
    /// Learn the live node's channel identifiers and use them in what lnrr sends and compares.
    public var bind: Bool
    public var order: ReplayOrder
    /// Under `protocol` order: how many steps before or after its recorded place a connection-level
    /// message may arrive and still be matched.
    public var orderWindow: Int

    /// The default window: wider than the whole of a typical session (a channel opened, used and
    /// closed is about 30 steps), narrow enough that a message from much later is not taken.
    public static let defaultOrderWindow = 64

    public init(side: Side, matcher: MessageMatcher, timing: ReplayTiming, timeoutNanos: UInt64,
                ignore: TypeFilter, rules: RuleSet?, bind: Bool = true, order: ReplayOrder = .protocol,
                orderWindow: Int = ReplayOptions.defaultOrderWindow) {
        self.side = side
        self.matcher = matcher
        self.timing = timing
        self.timeoutNanos = timeoutNanos
        self.ignore = ignore
        self.rules = rules
        self.bind = bind
        self.order = order
        self.orderWindow = orderWindow
    }

    /// Whether the live node sends `message` on its own schedule, so that `protocol` order does not
    /// hold it to its recorded place: peer storage (7, 9), ping and pong, gossip and gossip queries,
    /// and a `warning` about the whole connection (all-zero `channel_id`, BOLT 1).
    public static func isConnectionScheduled(_ message: [UInt8]) -> Bool {
        guard let type = WireMessage.type(message) else { return false }
        switch type {
        case 7, 9, 18, 19: return true
        case 1: return message.count >= 34 && message[2..<34].allSatisfy { $0 == 0 }
        default: return TypeFilter.gossip.contains { $0.contains(type) }
        }
    }
}

/// One line of a replay report.
public struct StepOutcome: Sendable, Equatable {
    public enum Result: String, Sendable {
        /// lnrr sent a recorded message.
        case sent
        /// The live node sent what the recording says it sent.
        case matched
        /// The live node sent the expected type with different content (`fields`/`exact`).
        case diverged
        /// The live node did not send the expected message (or did not close) in time.
        case missing
        /// The live node sent something the recording does not have here.
        case unexpected
        /// A replay rule kept a message from being sent or from being matched.
        case dropped
        /// A replay rule sent a message of its own.
        case injected
        /// lnrr closed the connection, as the recording ends.
        case closed
        /// Steps the replay did not get to, after it stopped.
        case notRun = "not-run"
        /// A message came as recorded but at another point, where the protocol does not order it
        /// (`--order protocol`: a connection-level message, or another channel's message).
        case reordered
        /// lnrr learned what the live node calls a recorded identifier (`binding` says which).
        case bound
    }

    /// The step's number over the whole replay (from 1); nil for lines that are not steps.
    public var step: Int?
    /// Which recording (from 0) when several are replayed with reconnects.
    public var segment: Int
    public var result: Result
    public var direction: Direction
    /// The message involved (type and payload); empty for closes and summaries.
    public var bytes: [UInt8]
    /// The recorded message's index in its file.
    public var recordIndex: Int?
    /// Since the connection came up.
    public var elapsedNanos: UInt64
    public var detail: String?
    /// For lines that are not steps (`unexpected`): the step the replay was waiting for.
    public var atStep: Int? = nil
    /// For `diverged`: each difference, whole.
    public var differences: [FieldDifference] = []
    /// For `bound`: the identifier pair learned.
    public var binding: IdentifierBinding.Pair? = nil

    /// Whether this line means the live node did not behave as recorded.
    public var isDivergence: Bool { result == .diverged || result == .missing || result == .unexpected || result == .notRun }
    public var type: UInt16? { WireMessage.type(bytes) }
}

/// What the runner asks its driver to do.
public enum RunnerAction: Sendable, Equatable {
    case send([UInt8])
    case close
    /// Call `tick` at this monotonic time (nanoseconds) or later.
    case wake(atNanos: UInt64)
    /// The runner sent as much as one turn may (`ReplayRunner.sendsPerTurn`): call `tick` once the
    /// connection has taken it (is writable again). This keeps what waits to be written bounded
    /// when steps are due faster than the live node reads (`--timing fast`).
    case yield
    case report(StepOutcome)
    /// The segment is over; no further actions will come.
    case finished
}

/// Plays one recorded session against a live node: an I/O-free state machine fed with what the
/// connection does and the time, answering with actions. The NIO driver only moves bytes and
/// timers, so every decision here is testable without sockets.
public struct ReplayRunner {
    public let segment: ReplaySegment
    public let segmentIndex: Int
    public let options: ReplayOptions
    /// The number the first step of this segment gets in the report.
    public let firstStepNumber: Int

    /// A message from the live node, waiting to be matched, with what the live phase tracker made of it.
    private struct Inbound {
        var bytes: [UInt8]
        var at: UInt64
        var observation: PhaseObservation
    }

    private var next = 0
    /// Messages sent in this turn (since the last input).
    private var sentThisTurn = 0
    /// At most this many messages are sent per input before the runner yields (`RunnerAction.yield`).
    public static let sendsPerTurn = 64
    private var inbox: [Inbound] = []
    private var started: UInt64 = 0
    /// The real and recorded times of the last completed step: the recorded gap is kept from there.
    private var anchorReal: UInt64 = 0
    private var anchorRecorded: UInt64 = 0
    private var waitingSince: UInt64?
    /// How the live node's side of the connection ended, once it has.
    private var peerClosed: String?
    private var weClosed = false
    public private(set) var isFinished = false

    /// Phases and rules, shared with the proxy's relay core (`RuleStage`, `EffectPlan`).
    private var stage: RuleStage?
    /// The phases of the live traffic (what lnrr sent, what the live node sent), kept for the
    /// binding and the channel order whether or not rules run.
    private var livePhases = PhaseTracker()
    /// The phases of the recorded messages of the steps done so far: with `livePhases`, where the
    /// recorded and the live channel got their final ids.
    private var recordedPhases = PhaseTracker()
    /// Recorded identifiers and their live counterparts (carried over from earlier segments).
    public private(set) var binding: IdentifierBinding
    /// Under `protocol` order: later steps already matched by an early connection-level message...
    private var early = Set<Int>()
    /// ...and connection-level steps passed before their message came, still to be matched (at
    /// most `orderWindow` + 1: older ones are reported missing).
    private var deferred: [(index: Int, step: ReplayStep)] = []
    /// The steps from `next` on that the runner looks at, read from the recording as it goes.
    private var window: StepWindow
    /// The channel number of each recorded id (`protocol` order), from a pass over every step.
    private let channelNumbers: [ChannelID: Int]
    /// The rest of a send's plan, held by a rule's `delay` until the given time.
    private var pendingSend: (steps: ArraySlice<EffectStep>, note: String, until: UInt64)?

    public init(segment: ReplaySegment, segmentIndex: Int, firstStepNumber: Int, options: ReplayOptions,
                binding: IdentifierBinding = IdentifierBinding()) {
        self.segment = segment
        self.segmentIndex = segmentIndex
        self.firstStepNumber = firstStepNumber
        self.options = options
        self.binding = binding
        // lnrr sends only as the side it plays: injections the other way cannot reach anyone.
        stage = options.rules.map {
            RuleStage(rules: $0, nodeA: segment.metadata?.nodeA, nodeB: segment.metadata?.nodeB,
                      injectable: [options.side.sending])
        }
        var failure: String?
        var numbers: [ChannelID: Int] = [:]
        if options.order == .protocol {
            // A live message's channel is placed among all the recording's channels, even one first
            // seen beyond the window: one streaming pass numbers them (memory: one entry per channel).
            do {
                let stream = try segment.makeStepStream()
                var numbering = ChannelNumbering()
                while let step = try stream.next() { _ = numbering.number(step) }
                numbers = numbering.numbers
            } catch {
                failure = "\(error)"
            }
        }
        channelNumbers = numbers
        window = StepWindow(segment: segment, numbersChannels: options.order == .protocol, failure: failure)
    }

    // MARK: Inputs

    /// The BOLT 8 handshake completed at `now`.
    public mutating func start(now: UInt64) -> [RunnerAction] {
        started = now
        anchorReal = now
        anchorRecorded = window.step(0)?.timestampNanos ?? 0
        var actions: [RunnerAction] = []
        advance(now: now, &actions)
        return actions
    }

    /// The live node sent a message.
    public mutating func received(_ bytes: [UInt8], now: UInt64) -> [RunnerAction] {
        var actions: [RunnerAction] = []
        guard !isFinished else { return actions }
        guard let type = WireMessage.type(bytes) else {
            report(.unexpected, options.side.receiving, bytes, nil, now, "a message shorter than its 2-byte type", &actions)
            return actions
        }
        if options.ignore.contains(type) {
            // Keep the connection alive the way the node we stand in for would have.
            if type == 18, let pong = WireMessage.pong(answering: bytes) { actions.append(.send(pong)) }
            return actions
        }
        let observation = livePhases.observe(bytes, direction: options.side.receiving)
        var message = bytes
        if stage != nil {
            let plan = stage!.process(bytes, direction: options.side.receiving)
            if !plan.isPlain {
                let note = plan.effects.annotations.joined(separator: "; ")
                // A live node's message is matched, not delivered: a delay has nothing to hold.
                for step in plan.steps {
                    switch step {
                    case .inject(let injected):
                        inject(injected, now, &actions)
                    case .delay:
                        break
                    case .deliver(.none, _):
                        report(.dropped, options.side.receiving, bytes, nil, now, note, &actions)
                        message = []
                    case .deliver(.replacement(let replacement), _):
                        message = replacement
                    case .deliver(.original, _):
                        break
                    case .fault:
                        // Faults shape the proxy's sockets; replay carries out the message effects only
                        // (docs/rules.md, "Faults"). The annotation still reaches the report.
                        break
                    case .disconnect(let kind):
                        report(.closed, options.side.sending, [], nil, now, "a replay rule disconnected (\(kind.rawValue)): " + note, &actions)
                        stop(now, because: "a replay rule ended the connection", &actions)
                        return actions
                    }
                }
                if message.isEmpty { return actions }
            }
        }
        inbox.append(Inbound(bytes: message, at: now, observation: observation))
        advance(now: now, &actions)
        return actions
    }

    /// The live node closed the connection (or it failed: `detail` says how).
    public mutating func connectionClosed(now: UInt64, detail: String? = nil) -> [RunnerAction] {
        var actions: [RunnerAction] = []
        guard !isFinished, !weClosed else { return actions }
        peerClosed = detail ?? "the live node closed the connection"
        advance(now: now, &actions)
        return actions
    }

    /// A `wake` time has come.
    public mutating func tick(now: UInt64) -> [RunnerAction] {
        var actions: [RunnerAction] = []
        guard !isFinished else { return actions }
        advance(now: now, &actions)
        return actions
    }

    // MARK: Stepping

    private var protocolOrder: Bool { options.order == .protocol }

    /// A step the `protocol` order does not hold to its recorded place.
    private func isFloating(_ step: ReplayStep) -> Bool {
        protocolOrder && step.kind == .expect && ReplayOptions.isConnectionScheduled(step.bytes)
    }

    private mutating func advance(now: UInt64, _ actions: inout [RunnerAction]) {
        sentThisTurn = 0
        while !isFinished {
            expireDeferred(now, &actions)
            guard next < segment.stepCount else {
                finish(&actions)
                return
            }
            window.drop(below: next)
            guard let step = window.step(next) else {
                stop(now, because: "the recording could not be read: " + (window.failure ?? "it ended early"), &actions)
                return
            }
            switch step.kind {
            case .send:
                if let peerClosed {
                    stop(now, because: peerClosed + " before this message could be sent", &actions)
                    return
                }
                let due = dueTime(step)
                if now < due {
                    actions.append(.wake(atNanos: due))
                    return
                }
                if sentThisTurn == Self.sendsPerTurn {
                    actions.append(.yield)
                    return
                }
                sentThisTurn += 1
                guard send(step, now: now, &actions) else { return }
                complete(step, at: now)
            case .expect:
                if early.remove(next) != nil {
                    // Matched when it came, before its turn (reported then).
                    next += 1
                    continue
                }
                if isFloating(step) {
                    // Taken wherever it is in the inbox; if it has not come yet, the replay goes
                    // on without it and takes it when it comes (within the window).
                    if let i = inbox.firstIndex(where: { WireMessage.type($0.bytes) == step.type }) {
                        let inbound = inbox.remove(at: i)
                        match(next, step, inbound, reordered: i == 0 ? nil : "came after messages recorded later", &actions)
                        complete(step, at: inbound.at)
                    } else {
                        deferred.append((next, step))
                        next += 1
                    }
                    continue
                }
                var matched = false
                while !matched, !inbox.isEmpty {
                    let inbound = inbox.removeFirst()
                    if WireMessage.type(inbound.bytes) == step.type && !ofAnotherChannel(inbound, than: next) {
                        match(next, step, inbound, reordered: nil, &actions)
                        complete(step, at: inbound.at)
                        matched = true
                    } else if !placeElsewhere(inbound, &actions) && !placeInItsChannel(inbound, &actions) {
                        report(.unexpected, step.direction, inbound.bytes, nil, inbound.at, "while waiting for \(describe(step.bytes))",
                               &actions, atStep: firstStepNumber + next)
                    }
                }
                if !matched {
                    waitFor(step, now: now, &actions)
                    return
                }
            case .expectClose:
                drainUnexpected(&actions, waitingFor: "the live node to close the connection")
                guard peerClosed != nil else {
                    waitFor(step, now: now, &actions)
                    return
                }
                reportDeferredMissing(now, why: "the live node closed the connection before sending it", &actions)
                report(.matched, step.direction, [], step, now, "the live node closed the connection, as recorded", &actions)
                complete(step, at: now)
            case .close:
                drainUnexpected(&actions, waitingFor: "the end of the recording")
                if let peerClosed {
                    // The recording has us close here; the live node closing first is the same ending
                    // seen a moment earlier (it would have closed on its own in the recording too).
                    reportDeferredMissing(now, why: peerClosed + " before sending it", &actions)
                    report(.closed, step.direction, [], step, now, peerClosed + " first", &actions)
                    complete(step, at: now)
                    continue
                }
                if !deferred.isEmpty {
                    // Connection-level messages still to come get the usual timeout before lnrr closes.
                    let since = waitingSince ?? now
                    waitingSince = since
                    if now < since + options.timeoutNanos {
                        actions.append(.wake(atNanos: since + options.timeoutNanos))
                        return
                    }
                    reportDeferredMissing(now, why: "not within \(options.timeoutNanos / 1_000_000) ms before the end", &actions)
                }
                let due = dueTime(step)
                if now < due {
                    actions.append(.wake(atNanos: due))
                    return
                }
                weClosed = true
                actions.append(.close)
                report(.closed, step.direction, [], step, now, segment.truncated ? "end of a truncated recording" : "as recorded", &actions)
                complete(step, at: now)
            }
        }
    }

    /// Matches the live message `inbound` with step `index` (same type): learns identifiers,
    /// compares through the binding, reports.
    private mutating func match(_ index: Int, _ step: ReplayStep, _ inbound: Inbound, reordered: String?,
                                _ actions: inout [RunnerAction]) {
        let recordedObservation = recordedPhases.observe(step.bytes, direction: step.direction)
        if options.bind {
            let learned = binding.learn(recorded: step.bytes, live: inbound.bytes)
                + binding.learn(recorded: recordedObservation, live: inbound.observation)
            reportBindings(learned, step.direction, inbound.at, &actions)
        }
        let expected = options.bind ? binding.rewrite(step.bytes) : step.bytes
        let differences = options.matcher.differences(expected: expected, got: inbound.bytes)
        let result: StepOutcome.Result = !differences.isEmpty ? .diverged : reordered != nil ? .reordered : .matched
        let detail = differences.isEmpty ? reordered : differences.map(\.summary).joined(separator: "; ")
            + (reordered.map { " (and \($0))" } ?? "")
        report(result, step.direction, inbound.bytes, step, inbound.at, detail, &actions, index: index, differences: differences)
    }

    /// Under `protocol` order, a connection-level message that is not the one awaited: the
    /// deferred step it belongs to, or a later one within the window. False when it fits nowhere.
    private mutating func placeElsewhere(_ inbound: Inbound, _ actions: inout [RunnerAction]) -> Bool {
        guard protocolOrder, ReplayOptions.isConnectionScheduled(inbound.bytes) else { return false }
        let type = WireMessage.type(inbound.bytes)
        if let d = deferred.firstIndex(where: { $0.step.type == type }) {
            let (index, step) = deferred.remove(at: d)
            match(index, step, inbound, reordered: "recorded at step \(firstStepNumber + index), came at step \(firstStepNumber + next)", &actions)
            return true
        }
        let end = min(segment.stepCount, next + 1 + options.orderWindow)
        guard next + 1 < end else { return false }
        for j in (next + 1)..<end where !early.contains(j) {
            guard let later = window.step(j) else { break }
            if later.kind == .expect && later.type == type {
                early.insert(j)
                match(j, later, inbound, reordered: "recorded at step \(firstStepNumber + j), came at step \(firstStepNumber + next)", &actions)
                return true
            }
        }
        return false
    }

    /// The recorded channel number of a live message: through the binding, or its id as it is.
    private func channelNumber(of inbound: Inbound) -> Int? {
        guard let live = inbound.observation.channel, !live.isZero else { return nil }
        return channelNumbers[binding.recorded(for: live) ?? live]
    }

    /// Under `protocol` order, whether a live message belongs to a known channel other than step
    /// `index`'s (then it is not that step's message, whatever its type).
    private mutating func ofAnotherChannel(_ inbound: Inbound, than index: Int) -> Bool {
        guard protocolOrder, let awaited = window.channel(index),
              let channel = channelNumber(of: inbound) else { return false }
        return channel != awaited
    }

    /// Under `protocol` order, a channel message that is not the one awaited because the awaited
    /// step belongs to another channel: it is taken by the next step of its own channel, if that
    /// step is of its type, within the window, and nothing orders it after the awaited step (a
    /// message lnrr still has to send on that channel, or a message of the whole connection).
    private mutating func placeInItsChannel(_ inbound: Inbound, _ actions: inout [RunnerAction]) -> Bool {
        guard protocolOrder, let awaited = window.channel(next),
              let channel = channelNumber(of: inbound), channel != awaited else { return false }
        let type = WireMessage.type(inbound.bytes)
        let end = min(segment.stepCount, next + 1 + options.orderWindow)
        var j = next + 1
        while j < end {
            defer { j += 1 }
            if early.contains(j) { continue }
            guard let step = window.step(j) else { return false }
            let owner = window.channel(j)
            switch step.kind {
            case .send:
                if owner == nil || owner == channel { return false }
            case .expect:
                if isFloating(step) { continue }
                guard let owner else { return false }
                guard owner == channel else { continue }
                guard step.type == type else { return false }
                early.insert(j)
                match(j, step, inbound, reordered: "recorded at step \(firstStepNumber + j) after other channels' messages, came at step \(firstStepNumber + next)", &actions)
                return true
            case .expectClose, .close:
                return false
            }
        }
        return false
    }

    /// Deferred steps whose window has passed are missing; the replay goes on.
    private mutating func expireDeferred(_ now: UInt64, _ actions: inout [RunnerAction]) {
        while let (first, step) = deferred.first, next - first > options.orderWindow {
            deferred.removeFirst()
            report(.missing, step.direction, step.bytes, step, now,
                   "not within \(options.orderWindow) steps of its recorded place", &actions, index: first)
        }
    }

    private mutating func reportDeferredMissing(_ now: UInt64, why: String, _ actions: inout [RunnerAction]) {
        for (index, step) in deferred {
            report(.missing, step.direction, step.bytes, step, now, why, &actions, index: index)
        }
        deferred.removeAll()
    }

    private func reportBindings(_ pairs: [IdentifierBinding.Pair], _ direction: Direction, _ at: UInt64,
                                _ actions: inout [RunnerAction]) {
        for pair in pairs {
            actions.append(.report(StepOutcome(step: nil, segment: segmentIndex, result: .bound, direction: direction, bytes: [],
                                               recordIndex: nil, elapsedNanos: at &- started,
                                               detail: "\(pair.kind.rawValue) \(pair.recorded.shortHex) in the recording is \(pair.live.shortHex) live",
                                               atStep: firstStepNumber + next, binding: pair)))
        }
    }

    /// Waits for `step` until its deadline, then reports it missing and stops the replay; a
    /// message cannot come any more once the live node has closed.
    private mutating func waitFor(_ step: ReplayStep, now: UInt64, _ actions: inout [RunnerAction]) {
        let what = step.kind == .expectClose ? "the close" : describe(step.bytes)
        if let peerClosed, step.kind == .expect {
            report(.missing, step.direction, step.bytes, step, now, peerClosed + " before sending it", &actions)
            next += 1
            stop(now, because: "a recorded message did not come", &actions)
            return
        }
        let since = waitingSince ?? now
        waitingSince = since
        let deadline = since + options.timeoutNanos
        if now >= deadline {
            report(.missing, step.direction, step.kind == .expect ? step.bytes : [], step, now,
                   "no \(what) within \(options.timeoutNanos / 1_000_000) ms", &actions)
            next += 1
            stop(now, because: "a recorded message did not come", &actions)
            return
        }
        actions.append(.wake(atNanos: deadline))
    }

    private mutating func complete(_ step: ReplayStep, at time: UInt64) {
        anchorReal = time
        anchorRecorded = step.timestampNanos
        waitingSince = nil
        next += 1
    }

    private func dueTime(_ step: ReplayStep) -> UInt64 {
        let gap = step.timestampNanos > anchorRecorded ? step.timestampNanos - anchorRecorded : 0
        return anchorReal + options.timing.wait(forRecordedGap: gap)
    }

    /// The step as lnrr sends it: with binding on, the live node's ids in place of the recorded
    /// ones (and a note saying so). The first time a step is sent (not again after a rule's
    /// delay), both phase trackers see it, and a channel renamed in both is bound.
    private mutating func bound(_ recorded: ReplayStep, now: UInt64, _ actions: inout [RunnerAction]) -> ReplayStep {
        var step = recorded
        if options.bind {
            step.bytes = binding.rewrite(recorded.bytes)
            if step.bytes != recorded.bytes {
                step.note = [recorded.note, "with the live node's channel id"].compactMap { $0 }.joined(separator: "; ")
            }
        }
        guard pendingSend == nil else { return step }
        let live = livePhases.observe(step.bytes, direction: step.direction)
        let original = recordedPhases.observe(recorded.bytes, direction: recorded.direction)
        if options.bind {
            reportBindings(binding.learn(recorded: original, live: live), step.direction, now, &actions)
        }
        return step
    }

    /// Sends a step's message through the replay rules; false when the step must wait (a delay).
    /// With binding on, the message carries the live node's identifiers (`bound(_:now:)`).
    private mutating func send(_ recorded: ReplayStep, now: UInt64, _ actions: inout [RunnerAction]) -> Bool {
        let step = bound(recorded, now: now, &actions)
        guard stage != nil else {
            actions.append(.send(step.bytes))
            report(.sent, step.direction, step.bytes, step, now, step.note, &actions)
            return true
        }
        var steps: ArraySlice<EffectStep>
        let note: String
        if let pending = pendingSend {
            guard now >= pending.until else {
                actions.append(.wake(atNanos: pending.until))
                return false
            }
            (steps, note) = (pending.steps, pending.note)
            pendingSend = nil
        } else {
            let plan = stage!.process(step.bytes, direction: step.direction)
            if plan.isPlain {
                actions.append(.send(step.bytes))
                report(.sent, step.direction, step.bytes, step, now, step.note, &actions)
                return true
            }
            steps = plan.steps[...]
            note = ([step.note].compactMap { $0 } + plan.effects.annotations).joined(separator: "; ")
        }
        // The plan's steps in order, exactly as the proxy's relay core carries them out.
        while let effect = steps.popFirst() {
            switch effect {
            case .inject(let injected):
                inject(injected, now, &actions)
            case .delay(let ms):
                pendingSend = (steps, note, now + UInt64(ms) * 1_000_000)
                actions.append(.wake(atNanos: pendingSend!.until))
                return false
            case .deliver(let delivery, let copies):
                let bytes: [UInt8]
                switch delivery {
                case .none:
                    report(.dropped, step.direction, step.bytes, step, now, note, &actions)
                    continue
                case .original: bytes = step.bytes
                case .replacement(let replacement): bytes = replacement
                }
                for _ in 0..<copies { actions.append(.send(bytes)) }
                report(.sent, step.direction, bytes, step, now, note.isEmpty ? nil : note, &actions)
            case .fault:
                // Faults shape the proxy's sockets only (docs/rules.md, "Faults").
                continue
            case .disconnect(let kind):
                next += 1
                halt(kind, now, &actions)
                return false
            }
        }
        return true
    }

    private mutating func inject(_ injected: InjectedMessage, _ now: UInt64, _ actions: inout [RunnerAction]) {
        guard injected.direction == options.side.sending else {
            report(.dropped, injected.direction, injected.message, nil, now,
                   "a replay rule injects \(injected.direction.rawValue), but lnrr plays \(options.side.rawValue) and cannot send as the live node", &actions)
            return
        }
        // The stage has already shown the injection to the rules' phase tracker (RuleStage.process);
        // the live traffic's tracker sees it too.
        _ = livePhases.observe(injected.message, direction: injected.direction)
        actions.append(.send(injected.message))
        report(.injected, injected.direction, injected.message, nil, now, "by a replay rule", &actions)
    }

    /// A disconnect rule ended the replay: `before`/`after` close, `blackhole`/`stall` just stop.
    private mutating func halt(_ kind: DisconnectKind, _ now: UInt64, _ actions: inout [RunnerAction]) {
        report(.closed, options.side.sending, [], nil, now, "a replay rule: disconnect \(kind.rawValue) (\(kind.symbol))", &actions)
        stop(now, because: "a replay rule ended the connection", &actions)
    }

    /// Messages that came when none is expected: connection-level ones may still belong to a
    /// deferred step; the rest are unexpected.
    private mutating func drainUnexpected(_ actions: inout [RunnerAction], waitingFor: String) {
        while !inbox.isEmpty {
            let inbound = inbox.removeFirst()
            if placeElsewhere(inbound, &actions) { continue }
            report(.unexpected, options.side.receiving, inbound.bytes, nil, inbound.at, "while waiting for \(waitingFor)", &actions,
                   atStep: firstStepNumber + next)
        }
    }

    /// Ends the segment early: the steps left are reported as not run, in one line.
    private mutating func stop(_ now: UInt64, because why: String, _ actions: inout [RunnerAction]) {
        reportDeferredMissing(now, why: "the replay stopped before it came", &actions)
        let remaining = segment.stepCount - next
        if remaining > 0 {
            let first = firstStepNumber + next
            let range = remaining == 1 ? "step \(first)" : "steps \(first)-\(first + remaining - 1)"
            actions.append(.report(StepOutcome(step: first, segment: segmentIndex, result: .notRun, direction: options.side.sending,
                                               bytes: [], recordIndex: nil, elapsedNanos: now &- started,
                                               detail: "\(range) not run: \(why)")))
        }
        if peerClosed == nil && !weClosed {
            weClosed = true
            actions.append(.close)
        }
        finish(&actions)
    }

    private mutating func finish(_ actions: inout [RunnerAction]) {
        guard !isFinished else { return }
        isFinished = true
        actions.append(.finished)
    }

    /// Reports one line. A step's number is that of `index` (default: the current step).
    private func report(_ result: StepOutcome.Result, _ direction: Direction, _ bytes: [UInt8], _ step: ReplayStep?,
                        _ at: UInt64, _ detail: String?, _ actions: inout [RunnerAction],
                        index: Int? = nil, atStep: Int? = nil, differences: [FieldDifference] = []) {
        let number = step == nil ? nil : firstStepNumber + (index ?? next)
        actions.append(.report(StepOutcome(step: number, segment: segmentIndex, result: result, direction: direction, bytes: bytes,
                                           recordIndex: step?.recordIndex, elapsedNanos: at &- started, detail: detail,
                                           atStep: atStep, differences: differences)))
    }

    private func describe(_ bytes: [UInt8]) -> String {
        WireMessage.type(bytes).map(describeType) ?? "a message"
    }
}

/// A message type as reports show it: its BOLT name, or its kind and number.
public func describeType(_ type: UInt16) -> String {
    MessageCatalogue.name(of: type) ?? "\(MessageCatalogue.kind(of: type).rawValue) \(type)"
}

/// Numbers the channels of recorded steps in order, following renames (temporary to final id):
/// the same numbers whether the steps are numbered in a pass of their own or as a replay reads them.
struct ChannelNumbering {
    private var tracker = PhaseTracker()
    private(set) var numbers: [ChannelID: Int] = [:]

    /// The channel of `step` (a number per channel, its temporary and final ids alike); nil for
    /// messages of the connection as a whole and for the close steps.
    mutating func number(_ step: ReplayStep) -> Int? {
        guard !step.bytes.isEmpty else { return nil }
        let seen = tracker.observe(step.bytes, direction: step.direction)
        if let renamed = seen.changes.first(where: { $0.renamedFrom != nil }), let final = renamed.channel,
           let number = numbers[renamed.renamedFrom!] {
            numbers[final] = number
        }
        guard let id = seen.channel, !id.isZero else { return nil }
        if numbers[id] == nil { numbers[id] = numbers.count }
        return numbers[id]
    }
}

/// The steps a runner may look at: from the oldest one still deferred (or the current one) to as
/// far ahead as it has looked (at most `orderWindow` past the current step), read from the
/// segment's stream when first asked for and forgotten once behind. This is what keeps a replay's
/// memory independent of the recording's size.
struct StepWindow {
    private var stream: ReplayStepStream?
    private var numbering: ChannelNumbering?
    /// The step numbered `base` is `held[head]`.
    private var held: [(step: ReplayStep, channel: Int?)] = []
    private var head = 0
    private var base = 0
    /// Why steps could not be read, once they could not.
    private(set) var failure: String?

    init(segment: ReplaySegment, numbersChannels: Bool, failure: String?) {
        self.failure = failure
        numbering = numbersChannels ? ChannelNumbering() : nil
        guard failure == nil else { return }
        do { stream = try segment.makeStepStream() } catch { self.failure = "\(error)" }
    }

    /// Step `index` (not below the last `drop`), or nil when the recording cannot give it.
    mutating func step(_ index: Int) -> ReplayStep? {
        fill(through: index) ? held[head + index - base].step : nil
    }

    /// The channel number of step `index` (`protocol` order), nil for the whole connection.
    mutating func channel(_ index: Int) -> Int? {
        fill(through: index) ? held[head + index - base].channel : nil
    }

    /// Forgets the steps before `index`.
    mutating func drop(below index: Int) {
        guard index > base else { return }
        let gone = min(index - base, held.count - head)
        head += gone
        base += gone
        // Compact now and then, so that the array holds about the window and never the session.
        if head >= 64 && head * 2 >= held.count {
            held.removeFirst(head)
            head = 0
        }
    }

    private mutating func fill(through index: Int) -> Bool {
        precondition(index >= base, "a replay step is asked for after it was dropped")
        while base + held.count - head <= index {
            guard let stream else { return false }
            do {
                guard let step = try stream.next() else {
                    self.stream = nil
                    return false
                }
                held.append((step, numbering?.number(step)))
            } catch {
                failure = "\(error)"
                self.stream = nil
                return false
            }
        }
        return true
    }
}
