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
public struct ReplaySegment: Sendable {
    public var path: String
    public var metadata: SessionMetadata?
    public var steps: [ReplayStep]
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

    /// The recording stops mid-record or without a `close` event: it was cut short (a kill -9, a
    /// copy taken while recording), and the replay ends where it ends.
    public var truncated: Bool {
        !hasClose || problems.contains { if case .truncatedTail = $0 { true } else { false } }
    }
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
    /// The steps for playing `side` of the session recorded in `path`.
    ///
    /// lnrr sends what the live node's counterpart *received* in the recording (injected messages
    /// and replacements included, dropped ones left out, duplicates twice) and expects what the
    /// live node *sent* (its own messages, whatever rules did to them afterwards). The `delivery:`
    /// comments and `hook` events the proxy writes (docs/recording-format.md) say which is which.
    public static func segment(path: String, side: Side, ignore: TypeFilter) throws -> ReplaySegment {
        let (reader, entries) = try RecordingReader.readAll(path: path)
        var messages: [RecordedMessage] = []
        var undelivered = Set<Int>()
        var close: RecordedEvent?
        var last: UInt64 = reader.metadata?.startedNanos ?? 0
        for entry in entries {
            switch entry {
            case .message(let m):
                messages.append(m)
                last = max(last, m.timestampNanos)
            case .event(let e):
                last = max(last, e.timestampNanos)
                switch e.event.kind {
                case .close: close = e
                case .hook:
                    // The hook answered after the message was recorded; drop and replace mean it
                    // was not delivered as recorded (a replacement record follows a replace).
                    if case .string(let result)? = e.event.fields["result"], result == "drop" || result == "replace",
                       case .int(let index)? = e.event.fields["message"] {
                        undelivered.insert(Int(index))
                    }
                default: break
                }
            }
        }
        var steps: [ReplayStep] = []
        var ignored = 0
        for m in messages {
            guard let type = m.type else { continue }
            if ignore.contains(type) {
                ignored += 1
                continue
            }
            let madeByLnrr = m.madeByLnrr
            if m.direction == side.sending {
                let copies = undelivered.contains(m.index) ? 0 : m.delivery?.copies ?? 1
                let note = madeByLnrr ? m.comments.first { $0.hasPrefix("injected by") || $0.hasPrefix("replacement for") } : nil
                for copy in 0..<copies {
                    steps.append(ReplayStep(kind: .send, direction: m.direction, bytes: m.bytes, recordIndex: m.index,
                                            timestampNanos: m.timestampNanos, note: copy > 0 ? "duplicate" : note))
                }
            } else if !madeByLnrr {
                steps.append(ReplayStep(kind: .expect, direction: m.direction, bytes: m.bytes, recordIndex: m.index,
                                        timestampNanos: m.timestampNanos, note: m.checksumOK ? nil : "checksum mismatch in the recording"))
            }
        }
        let liveSide = side.other.rawValue
        if let close, case .string(let by)? = close.event.fields["by"], by == liveSide,
           case .string(let reason)? = close.event.fields["reason"], reason == "eof" {
            steps.append(ReplayStep(kind: .expectClose, direction: side.receiving, bytes: [], recordIndex: nil,
                                    timestampNanos: close.timestampNanos, note: nil))
        } else {
            steps.append(ReplayStep(kind: .close, direction: side.sending, bytes: [], recordIndex: nil,
                                    timestampNanos: close?.timestampNanos ?? last, note: nil))
        }
        return ReplaySegment(path: path, metadata: reader.metadata, steps: steps, problems: reader.problems,
                             ignoredMessages: ignored, hasClose: close != nil, endNanos: close?.timestampNanos ?? last,
                             recordedMessages: messages.count)
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
