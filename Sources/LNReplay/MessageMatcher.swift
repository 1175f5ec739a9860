import LNWire

/// How closely what the live node sends must follow the recording.
public enum MatchMode: String, Sendable, CaseIterable {
    /// The same message types in the same order.
    case type
    /// Decoded fields equal, except the ignored ones (signatures, timestamps, padding by default).
    case fields
    /// Byte for byte.
    case exact
}

/// One way a live message differs from its recording: a decoded field (`fee_satoshis`,
/// `tlvs.remote_addr`), the message type (`type`) or, where there are no fields to compare, the bytes
/// (`bytes`, with the first offset that differs). Values are whole, never truncated.
public struct FieldDifference: Sendable, Equatable {
    /// The field's dotted path, or `type` / `bytes`.
    public var field: String
    /// The recorded value; nil when the recorded message lacks the field.
    public var recorded: JSONValue?
    /// The live value; nil when the live message lacks the field.
    public var live: JSONValue?
    /// For `bytes`: the first offset at which the messages differ.
    public var offset: Int?

    public init(field: String, recorded: JSONValue?, live: JSONValue?, offset: Int? = nil) {
        self.field = field
        self.recorded = recorded
        self.live = live
        self.offset = offset
    }

    /// `field: recorded X, live Y` with long values shortened, for one report line.
    public var summary: String {
        if field == "bytes", case .string(let r)? = recorded, case .string(let l)? = live {
            let common = offset ?? 0
            var text = "bytes differ from offset \(common)"
            let (rb, lb) = (r.utf8.count / 2, l.utf8.count / 2)
            if common < rb && common < lb {
                text += " (recorded \(r.dropFirst(2 * common).prefix(2)), live \(l.dropFirst(2 * common).prefix(2)))"
            }
            if rb != lb { text += "; length recorded \(rb), live \(lb)" }
            return text
        }
        if field == "type", case .string(let r)? = recorded, case .string(let l)? = live { return "expected \(r), got \(l)" }
        return "\(field): recorded \(Self.short(recorded)), live \(Self.short(live))"
    }

    static func short(_ value: JSONValue?) -> String {
        guard let value else { return "(absent)" }
        let text = value.description
        return text.count > 40 ? String(text.prefix(32)) + "...(\(text.count) chars)" : text
    }
}

/// Compares a message the live node sent with the one it sent in the recording.
public struct MessageMatcher: Sendable {
    public var mode: MatchMode
    /// Field names never compared in `fields` mode (a name matches at any depth, in TLVs too).
    public var ignoredFields: Set<String>

    /// Fields that differ between two honest runs: signatures (fresh nonces in some signers),
    /// timestamps, the padding of pings and pongs, and `init`'s `remote_addr` (the address the
    /// node saw us at: a fresh port on every connection).
    public static let defaultIgnoredFields: Set<String> = [
        "signature", "htlc_signature", "node_signature", "bitcoin_signature", "node_signature_1", "node_signature_2",
        "bitcoin_signature_1", "bitcoin_signature_2", "partial_signature_with_nonce", "sig",
        "timestamp", "first_timestamp", "timestamp_range",
        "ignored", "byteslen",
        "remote_addr",
    ]

    public init(mode: MatchMode, ignoredFields: Set<String> = MessageMatcher.defaultIgnoredFields) {
        self.mode = mode
        self.ignoredFields = ignoredFields
    }

    /// nil when `got` matches `expected`; otherwise what differs, in words (one line).
    public func difference(expected: [UInt8], got: [UInt8]) -> String? {
        let found = differences(expected: expected, got: got)
        return found.isEmpty ? nil : found.map(\.summary).joined(separator: "; ")
    }

    /// Every difference between `got` and `expected` under this mode; empty when they match.
    public func differences(expected: [UInt8], got: [UInt8]) -> [FieldDifference] {
        let expectedType = WireMessage.type(expected), gotType = WireMessage.type(got)
        if expectedType != gotType {
            return [FieldDifference(field: "type", recorded: .string(Self.name(expectedType)), live: .string(Self.name(gotType)))]
        }
        switch mode {
        case .type:
            return []
        case .exact:
            return expected == got ? [] : [Self.byteDifference(expected, got)]
        case .fields:
            return fieldDifferences(expected, got)
        }
    }

    private func fieldDifferences(_ expected: [UInt8], _ got: [UInt8]) -> [FieldDifference] {
        let e = WireCodec.decode(expected), g = WireCodec.decode(got)
        guard e.name != nil, e.isComplete, g.isComplete else {
            // Unknown or undecodable messages have no fields to compare: fall back to bytes.
            return expected == got ? [] : [Self.byteDifference(expected, got)]
        }
        var left: [(String, JSONValue)] = [], right: [(String, JSONValue)] = []
        flatten(e.fields.json, path: "", into: &left)
        flatten(g.fields.json, path: "", into: &right)
        if !e.rest.isEmpty { left.append(("(trailing bytes)", .string(HexString.encode(e.rest)))) }
        if !g.rest.isEmpty { right.append(("(trailing bytes)", .string(HexString.encode(g.rest)))) }
        let l = Dictionary(left, uniquingKeysWith: { a, _ in a }), r = Dictionary(right, uniquingKeysWith: { a, _ in a })
        var differences: [FieldDifference] = []
        var seen = Set<String>()
        for (path, _) in left + right where seen.insert(path).inserted {
            let a = l[path], b = r[path]
            if a == b { continue }
            differences.append(FieldDifference(field: path, recorded: a, live: b))
        }
        return differences
    }

    /// Leaf values by dotted path, skipping ignored names and the derived `bits`/`names` of features.
    private func flatten(_ value: JSONValue, path: String, into out: inout [(String, JSONValue)]) {
        switch value {
        case .object(let pairs):
            if path.hasSuffix("features"), case .string(let hex)? = value["hex"] {
                out.append((path, .string(hex)))
                return
            }
            for (key, child) in pairs where !ignoredFields.contains(key) {
                flatten(child, path: path.isEmpty ? key : path + "." + key, into: &out)
            }
        case .array(let items):
            for (i, item) in items.enumerated() { flatten(item, path: "\(path)[\(i)]", into: &out) }
        default:
            out.append((path, value))
        }
    }

    static func byteDifference(_ expected: [UInt8], _ got: [UInt8]) -> FieldDifference {
        let common = zip(expected, got).prefix { $0 == $1 }.count
        return FieldDifference(field: "bytes", recorded: .string(HexString.encode(expected)), live: .string(HexString.encode(got)),
                               offset: common)
    }

    static func name(_ type: UInt16?) -> String { type.map(describeType) ?? "a runt message" }
}
