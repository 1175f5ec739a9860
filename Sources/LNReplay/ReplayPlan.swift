import LNRecording
import LNRelay
import LNWire

/// One thing a replay does or waits for, taken from the recording.
public struct ReplayStep: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// Send this message to the live node (it received it in the recording).
        case send
        /// Wait for the live node to send a message like this one.
        case expect
        /// Wait for the live node to close the connection, as it did in the recording.
        case expectClose = "expect-close"
        /// Close the connection ourselves: the recording ended without the live side closing it.
        case close
    }

    public var kind: Kind
    public var direction: Direction
    /// Type and payload; empty for the close steps.
    public var bytes: [UInt8]
    /// The message's index in its recording, when the step comes from a message.
    public var recordIndex: Int?
    /// When it happened in the recording (nanoseconds since the epoch).
    public var timestampNanos: UInt64
    /// Why the step is there when it is not a plain recorded message ("injected by lnrr", ...).
    public var note: String?

    public var type: UInt16? { WireMessage.type(bytes) }
}

/// The steps of one recorded session (one connection), for one side.
///
/// A segment read from a recording does not hold its steps: `makeStepStream()` reads them from the
/// file again, one message at a time, so a replay's memory does not grow with the recording
/// (docs/reliability.md, "Reading: bounded memory"). What must be known before the first step
/// (the close, the hook verdicts, the counts) was gathered by streaming passes when the segment
/// was made.
public struct ReplaySegment: Sendable {
    public var path: String
    public var metadata: SessionMetadata?
    /// How many steps the segment has, its final close step included.
    public var stepCount: Int
    /// The message types among the steps.
    public var stepTypes: Set<UInt16>
    /// What the reader worked around (a truncated tail, a bad checksum).
    public var problems: [RecordingProblem]
    /// Recorded messages left out because their type is ignored.
    public var ignoredMessages: Int
    /// The recording ends with a `close` event.
    public var hasClose: Bool
    /// When the recorded session ended (its `close` event), or its last record.
    public var endNanos: UInt64
    /// The number of complete messages the recording holds.
    public var recordedMessages: Int
    /// Where the steps come from.
    let source: StepSource

    enum StepSource: Sendable {
        case memory([ReplayStep])
        case recording(RecordingSteps)
    }

    /// A segment whose steps are given (tests, steps made by hand).
    public init(path: String, metadata: SessionMetadata?, steps: [ReplayStep], problems: [RecordingProblem],
                ignoredMessages: Int, hasClose: Bool, endNanos: UInt64, recordedMessages: Int) {
        self.init(path: path, metadata: metadata, stepCount: steps.count, stepTypes: Set(steps.compactMap(\.type)),
                  problems: problems, ignoredMessages: ignoredMessages, hasClose: hasClose, endNanos: endNanos,
                  recordedMessages: recordedMessages, source: .memory(steps))
    }

    init(path: String, metadata: SessionMetadata?, stepCount: Int, stepTypes: Set<UInt16>, problems: [RecordingProblem],
         ignoredMessages: Int, hasClose: Bool, endNanos: UInt64, recordedMessages: Int, source: StepSource) {
        self.path = path
        self.metadata = metadata
        self.stepCount = stepCount
        self.stepTypes = stepTypes
        self.problems = problems
        self.ignoredMessages = ignoredMessages
        self.hasClose = hasClose
        self.endNanos = endNanos
        self.recordedMessages = recordedMessages
        self.source = source
    }

    /// The recording stops mid-record or without a `close` event: it was cut short (a kill -9, a
    /// copy taken while recording), and the replay ends where it ends.
    public var truncated: Bool {
        !hasClose || problems.contains { if case .truncatedTail = $0 { true } else { false } }
    }

    /// The steps in order, read as they are taken: each call starts again from the first step.
    /// Throws when the recording cannot be opened again.
    public func makeStepStream() throws -> ReplayStepStream {
        try ReplayStepStream(self)
    }

    /// Every step at once, held in memory: for tests and small plans; a replay streams them.
    public func allSteps() throws -> [ReplayStep] {
        let stream = try makeStepStream()
        var steps: [ReplayStep] = []
        while let step = try stream.next() { steps.append(step) }
        return steps
    }
}

/// A segment's steps, one at a time, read from its recording (or its array) as they are asked for.
/// Memory: the reader's buffer (256 KiB, more only for a block larger than that) and the steps of
/// one message (two for a duplicate).
public final class ReplayStepStream {
    private let segment: ReplaySegment
    private var memoryIndex = 0
    private var cursor: RecordingReader.Cursor?
    /// Steps made from the last message read, not yet taken.
    private var pending: [ReplayStep] = []
    private var pendingIndex = 0
    /// Where the next undelivered index may be in the plan's sorted list.
    private var undeliveredAt = 0
    private var produced = 0
    private var ended = false

    init(_ segment: ReplaySegment) throws {
        self.segment = segment
        if case .recording(let plan) = segment.source {
            cursor = try RecordingReader.Cursor(path: segment.path, limit: plan.endOffset)
        }
        pending.reserveCapacity(2)
    }

    /// The next step, or nil after the last. Throws when the recording is no longer what the plan
    /// was made from (changed while being replayed) or cannot be read.
    public func next() throws -> ReplayStep? {
        switch segment.source {
        case .memory(let steps):
            guard memoryIndex < steps.count else { return nil }
            defer { memoryIndex += 1 }
            return steps[memoryIndex]
        case .recording(let plan):
            while pendingIndex == pending.count {
                guard !ended, let cursor else { return nil }
                pending.removeAll(keepingCapacity: true)
                pendingIndex = 0
                guard let entry = try cursor.next() else {
                    ended = true
                    guard produced == segment.stepCount - 1 else { throw changed("\(produced) steps") }
                    pending.append(plan.final)
                    break
                }
                guard case .message(let m) = entry else { continue }
                while undeliveredAt < plan.undelivered.count && plan.undelivered[undeliveredAt] < m.index { undeliveredAt += 1 }
                let undelivered = undeliveredAt < plan.undelivered.count && plan.undelivered[undeliveredAt] == m.index
                _ = ReplayPlan.steps(of: m, undelivered: undelivered, side: plan.side, ignore: plan.ignore) { pending.append($0) }
                guard produced + pending.count < segment.stepCount else { throw changed("more steps") }
            }
            defer { pendingIndex += 1; produced += 1 }
            return pending[pendingIndex]
        }
    }

    private func changed(_ what: String) -> ReplayError {
        .usage("\(segment.path) changed while it was replayed: it now gives \(what) where it gave \(segment.stepCount - 1) before the close")
    }
}

/// What a segment read from a recording needs to make its steps again.
struct RecordingSteps: Sendable {
    var side: Side
    var ignore: TypeFilter
    /// The indexes of the messages a hook dropped or replaced after they were recorded, sorted.
    var undelivered: [Int]
    /// The close step that ends the segment.
    var final: ReplayStep
    /// Where the plan's pass stopped reading: the stream reads no further.
    var endOffset: Int
}

/// Types that may come and go between runs and are neither sent nor expected.
public struct TypeFilter: Sendable, Equatable {
    public var ranges: [ClosedRange<UInt16>]

    public init(_ ranges: [ClosedRange<UInt16>]) { self.ranges = ranges }

    public func contains(_ type: UInt16) -> Bool { ranges.contains { $0.contains(type) } }

    /// Gossip: announcements, updates and the gossip queries (BOLT 7), but not the
    /// `announcement_signatures` two channel peers exchange.
    public static let gossip: [ClosedRange<UInt16>] = [256...258, 261...265]

    /// The default: pings, pongs and gossip.
    public static let `default` = TypeFilter([18...19] + gossip)

    /// Parses `ping,pong,gossip,32768-33000,none`: names, numbers, ranges and the words
    /// `gossip`, `custom` and `none` (ignore nothing).
    public static func parse(_ text: String) throws -> TypeFilter {
        var ranges: [ClosedRange<UInt16>] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            switch item.lowercased() {
            case "none": continue
            case "gossip": ranges += gossip
            case "custom": ranges.append(32768...65535)
            default:
                if let type = MessageCatalogue.type(named: item) { ranges.append(type...type); continue }
                let bounds = item.split(separator: "-", maxSplits: 1).map(String.init)
                guard let low = UInt16(bounds[0]), let high = UInt16(bounds.count == 2 ? bounds[1] : bounds[0]), low <= high else {
                    let suggestions = MessageCatalogue.suggestions(for: item)
                    throw ReplayError.usage("--ignore: '\(item)' is not a message name, a type number or a range LOW-HIGH"
                                            + (suggestions.isEmpty ? "" : " (did you mean \(suggestions.joined(separator: ", "))?)"))
                }
                ranges.append(low...high)
            }
        }
        return TypeFilter(ranges)
    }
}

/// Turns recordings into replay steps.
public enum ReplayPlan {
    /// The plan for playing `side` of the session recorded in `path`.
    ///
    /// lnrr sends what the live node's counterpart *received* in the recording (injected messages
    /// and replacements included, dropped ones left out, duplicates twice) and expects what the
    /// live node *sent* (its own messages, whatever rules did to them afterwards). The `delivery:`
    /// comments and `hook` events the proxy writes (docs/recording-format.md) say which is which.
    ///
    /// Memory is bounded whatever the file's size. One pass reads every record and counts the
    /// steps; a `hook` verdict (drop, replace) comes after the message it judges, and takes that
    /// message's steps back out of the count while the message is among the last
    /// `recentMessages` (it always is in practice: the proxy holds a hooked message until the
    /// answer). Only a verdict about an older message costs a second pass that counts again. The
    /// steps themselves are read again when played (`makeStepStream`). What is kept grows only
    /// with the number of messages a hook dropped or replaced (8 bytes each).
    public static func segment(path: String, side: Side, ignore: TypeFilter) throws -> ReplaySegment {
        var undelivered: [Int] = []
        var close: RecordedEvent?
        var recorded = 0
        var last: UInt64 = 0
        var count = StepCount()
        // The send steps each of the last messages made, for a verdict that comes after.
        var recent: [(index: Int, steps: Int, type: UInt16)] = []
        var recentStart = 0
        var recountNeeded = false
        let cursor = try RecordingReader.Cursor(path: path)
        while let entry = try cursor.next() {
            switch entry {
            case .message(let m):
                recorded += 1
                last = max(last, m.timestampNanos)
                // A verdict takes out what lnrr would send; an expected message is the live node's own.
                let made = count.add(m, undelivered: false, side: side, ignore: ignore)
                let sends = m.direction == side.sending ? made : 0
                if recent.count < recentMessages {
                    recent.append((m.index, sends, m.type ?? 0))
                } else {
                    recent[recentStart] = (m.index, sends, m.type ?? 0)
                    recentStart = (recentStart + 1) % recentMessages
                }
            case .event(let e):
                last = max(last, e.timestampNanos)
                switch e.event.kind {
                case .close: close = e
                case .hook:
                    // The hook answered after the message was recorded; drop and replace mean it
                    // was not delivered as recorded (a replacement record follows a replace).
                    if case .string(let result)? = e.event.fields["result"], result == "drop" || result == "replace",
                       case .int(let index)? = e.event.fields["message"] {
                        undelivered.append(Int(index))
                        let slot = recent.indices.first { recent[$0].index == Int(index) }
                        if let slot {
                            count.remove(recent[slot].steps, ofType: recent[slot].type)
                            recent[slot].steps = 0
                        } else {
                            recountNeeded = true
                        }
                    }
                default: break
                }
            }
        }
        let reader = cursor.reader
        last = max(last, reader.metadata?.startedNanos ?? 0)
        undelivered.sort()
        if recountNeeded {
            count = StepCount()
            let again = try RecordingReader.Cursor(path: path, limit: reader.offset)
            var at = 0
            while let entry = try again.next() {
                guard case .message(let m) = entry else { continue }
                while at < undelivered.count && undelivered[at] < m.index { at += 1 }
                count.add(m, undelivered: at < undelivered.count && undelivered[at] == m.index, side: side, ignore: ignore)
            }
        }
        let liveSide = side.other.rawValue
        let final: ReplayStep
        if let close, case .string(let by)? = close.event.fields["by"], by == liveSide,
           case .string(let reason)? = close.event.fields["reason"], reason == "eof" {
            final = ReplayStep(kind: .expectClose, direction: side.receiving, bytes: [], recordIndex: nil,
                               timestampNanos: close.timestampNanos, note: nil)
        } else {
            final = ReplayStep(kind: .close, direction: side.sending, bytes: [], recordIndex: nil,
                               timestampNanos: close?.timestampNanos ?? last, note: nil)
        }
        let plan = RecordingSteps(side: side, ignore: ignore, undelivered: undelivered, final: final, endOffset: reader.offset)
        return ReplaySegment(path: path, metadata: reader.metadata, stepCount: count.steps + 1,
                             stepTypes: Set(count.types.keys), problems: reader.problems, ignoredMessages: count.ignored,
                             hasClose: close != nil, endNanos: close?.timestampNanos ?? last, recordedMessages: recorded,
                             source: .recording(plan))
    }

    /// How many of the last messages `segment` remembers the steps of, for a hook verdict.
    static let recentMessages = 4096

    /// The steps counted so far, by type.
    private struct StepCount {
        var steps = 0
        var ignored = 0
        /// Steps per message type (at most 65,536 entries).
        var types: [UInt16: Int] = [:]

        /// Counts `m`'s steps; returns how many it made.
        @discardableResult
        mutating func add(_ m: RecordedMessage, undelivered: Bool, side: Side, ignore: TypeFilter) -> Int {
            var made = 0
            if ReplayPlan.steps(of: m, undelivered: undelivered, side: side, ignore: ignore, { _ in made += 1 }) { ignored += 1 }
            if made > 0, let type = m.type {
                steps += made
                types[type, default: 0] += made
            }
            return made
        }

        mutating func remove(_ made: Int, ofType type: UInt16) {
            guard made > 0 else { return }
            steps -= made
            types[type, default: 0] -= made
            if types[type] == 0 { types[type] = nil }
        }
    }

    /// The steps one recorded message makes when `side` is played (none, one, or two for a
    /// duplicate); true when its type is ignored.
    @discardableResult
    static func steps(of m: RecordedMessage, undelivered: Bool, side: Side, ignore: TypeFilter,
                      _ emit: (ReplayStep) -> Void) -> Bool {
        guard let type = m.type else { return false }
        if ignore.contains(type) { return true }
        let madeByLnrr = m.madeByLnrr
        if m.direction == side.sending {
            let copies = undelivered ? 0 : m.delivery?.copies ?? 1
            let note = madeByLnrr ? m.comments.first { $0.hasPrefix("injected by") || $0.hasPrefix("replacement for") } : nil
            for copy in 0..<copies {
                emit(ReplayStep(kind: .send, direction: m.direction, bytes: m.bytes, recordIndex: m.index,
                                timestampNanos: m.timestampNanos, note: copy > 0 ? "duplicate" : note))
            }
        } else if !madeByLnrr {
            emit(ReplayStep(kind: .expect, direction: m.direction, bytes: m.bytes, recordIndex: m.index,
                            timestampNanos: m.timestampNanos, note: m.checksumOK ? nil : "checksum mismatch in the recording"))
        }
        return false
    }

    /// Several recordings of the same two nodes, put in time order for one replay with reconnects.
    public static func segments(paths: [String], side: Side, ignore: TypeFilter) throws -> [ReplaySegment] {
        var segments = try paths.map { try segment(path: $0, side: side, ignore: ignore) }
        segments.sort { ($0.metadata?.startedNanos ?? 0) < ($1.metadata?.startedNanos ?? 0) }
        if let first = segments.first {
            for other in segments.dropFirst() {
                if other.metadata?.nodeA != first.metadata?.nodeA || other.metadata?.nodeB != first.metadata?.nodeB {
                    throw ReplayError.usage("\(other.path) records other nodes than \(first.path); a replay with reconnects needs sessions between the same two nodes")
                }
            }
        }
        return segments
    }
}

extension RecordedMessage {
    /// lnrr made this message (an injection or a replacement); the sender never sent it. Recordings
    /// older than `delivery:` comments still marked their injections `injected by lnrr`.
    var madeByLnrr: Bool { delivery?.madeByLnrr ?? comments.contains("injected by lnrr") }
}

/// Errors a replay reports before or instead of running: the caller's to fix (exit 2).
public enum ReplayError: Error, CustomStringConvertible {
    case usage(String)
    case connection(String)

    public var description: String {
        switch self {
        case .usage(let why), .connection(let why): return why
        }
    }
}
