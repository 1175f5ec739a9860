import Foundation
import LNWire

/// When a recording's bytes are handed to the operating system (`write(2)`), and so what survives a
/// `kill -9` of lnrr. Nothing is `fsync`ed before a session ends, so after a power loss any level can
/// lose what the kernel had not yet written back (docs/reliability.md).
public enum SyncMode: String, Sendable, Codable, CaseIterable {
    /// Every record reaches the OS before the message it records is delivered: the proxy's batch of
    /// records is written when it calls `RecordingWriter.kick()`, before it flushes the messages on.
    /// After a `kill -9` every delivered message is in the file. The default.
    case message
    /// Records are written by the shared writer threads within 5 ms, or at 256 KiB: a `kill -9` can
    /// lose the last 5 ms of records, delivered messages among them.
    case batch
    /// Records are written at 4 MiB or every 250 ms, and at the end.
    case none
}

/// Who and what a recording is about: the JSON object in the section header's `lnrr:` comment.
public struct SessionMetadata: Sendable, Codable, Equatable {
    /// The format identifier; readers refuse major versions they do not know.
    public var format: String = SessionMetadata.currentFormat
    public var lnrrVersion: String
    public var sessionID: Int
    /// When a connected, as nanoseconds since the Unix epoch and as RFC 3339 (UTC).
    public var startedNanos: UInt64
    public var started: String
    /// a's node id (66 hex), nil when a's handshake never completed.
    public var nodeA: String?
    public var nodeB: String
    public var listen: String
    public var upstream: String
    /// Whether the proxy dialed b as a (b saw a's real node id).
    public var transparent: Bool
    public var syncMode: SyncMode
    public var rulesFile: String?
    public var rulesSHA256: String?

    public static let currentFormat = "lnrr-pcapng/1"

    public init(lnrrVersion: String, sessionID: Int, startedNanos: UInt64, nodeA: String?, nodeB: String,
                listen: String, upstream: String, transparent: Bool, syncMode: SyncMode,
                rulesFile: String? = nil, rulesSHA256: String? = nil) {
        self.lnrrVersion = lnrrVersion
        self.sessionID = sessionID
        self.startedNanos = startedNanos
        self.started = Self.rfc3339(nanos: startedNanos)
        self.nodeA = nodeA
        self.nodeB = nodeB
        self.listen = listen
        self.upstream = upstream
        self.transparent = transparent
        self.syncMode = syncMode
        self.rulesFile = rulesFile
        self.rulesSHA256 = rulesSHA256
    }

    enum CodingKeys: String, CodingKey {
        case format, lnrrVersion = "lnrr_version", sessionID = "session_id", startedNanos = "started_ns", started
        case nodeA = "node_a", nodeB = "node_b", listen, upstream, transparent, syncMode = "sync"
        case rulesFile = "rules_file", rulesSHA256 = "rules_sha256"
    }

    /// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    public static func rfc3339(nanos: UInt64) -> String {
        var t = time_t(nanos / 1_000_000_000)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, Int(nanos % 1_000_000_000))
    }

    /// The file name for this session: sorts by start time, shows both node ids' first 8 hex digits.
    public var fileName: String {
        var t = time_t(startedNanos / 1_000_000_000)
        var parts = tm()
        gmtime_r(&t, &parts)
        let stamp = String(format: "%04d%02d%02dT%02d%02d%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                           parts.tm_hour, parts.tm_min, parts.tm_sec)
        let a = nodeA.map { String($0.prefix(8)) } ?? "unknown"
        return "\(stamp)_\(a)_\(nodeB.prefix(8))_\(String(format: "%04d", sessionID)).pcapng"
    }
}

/// A value in a recorded event.
public enum RecordingEventValue: Sendable, Equatable, Codable {
    case string(String)
    case int(Int)
    case bool(Bool)

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let b = try? container.decode(Bool.self) { self = .bool(b) }
        else if let i = try? container.decode(Int.self) { self = .int(i) }
        else { self = .string(try container.decode(String.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let s): try container.encode(s)
        case .int(let i): try container.encode(i)
        case .bool(let b): try container.encode(b)
        }
    }
}

/// A session event (handshake done, close with its reason, back-pressure, ...): a packet on the
/// events interface whose data is one JSON object `{"event": NAME, ...fields}`.
public struct RecordingEvent: Sendable, Equatable {
    public var name: String
    public var fields: [String: RecordingEventValue]

    public init(name: String, fields: [String: RecordingEventValue] = [:]) {
        self.name = name
        self.fields = fields
    }

    /// Compact JSON with `event` first and the other keys sorted, so files are deterministic.
    public var json: String {
        var pairs: [(String, JSONValue)] = [("event", .string(name))]
        pairs.reserveCapacity(fields.count + 1)
        for key in fields.keys.sorted() {
            switch fields[key]! {
            case .string(let s): pairs.append((key, .string(s)))
            case .int(let i): pairs.append((key, .int(i)))
            case .bool(let b): pairs.append((key, .bool(b)))
            }
        }
        return JSONValue.object(pairs).description
    }

    /// The event the writer adds before `close` when it could not write the recording: fields
    /// `cause` (e.g. `ENOSPC: no space left on device`) and `unrecorded` (messages handed to the
    /// writer after the failure, which the file does not hold).
    public static let recordingFailedName = "recording-failed"
    /// Fields the writer adds to the `close` event: how many messages it was handed in each
    /// direction, so a reader can tell messages lost at the end of the file from none sent.
    public static let recordedAToBField = "recorded_a_to_b"
    public static let recordedBToAField = "recorded_b_to_a"

    /// Parses an event packet's data. Foundation's JSONDecoder reads it: this is the reading side of
    /// the same flat schema ``json`` writes (string, integer and boolean values only), decoded into
    /// the Codable ``RecordingEventValue``.
    public init?(json data: some Collection<UInt8>) {
        guard var object = try? JSONDecoder().decode([String: RecordingEventValue].self, from: Data(data)),
              case .string(let name)? = object.removeValue(forKey: "event") else { return nil }
        self.name = name
        self.fields = object
    }
}
