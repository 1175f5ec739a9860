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

/// Compares a message the live node sent with the one it sent in the recording.
public struct MessageMatcher: Sendable {
    public var mode: MatchMode
    /// Field names never compared in `fields` mode (a name matches at any depth, in TLVs too).
    public var ignoredFields: Set<String>

    /// Fields that differ between two honest runs: signatures (fresh nonces in some signers),
    /// timestamps, and the padding of pings and pongs.
    public static let defaultIgnoredFields: Set<String> = [
        "signature", "htlc_signature", "node_signature", "bitcoin_signature", "node_signature_1", "node_signature_2",
        "bitcoin_signature_1", "bitcoin_signature_2", "partial_signature_with_nonce", "sig",
        "timestamp", "first_timestamp", "timestamp_range",
        "ignored", "byteslen",
    ]

    public init(mode: MatchMode, ignoredFields: Set<String> = MessageMatcher.defaultIgnoredFields) {
        self.mode = mode
        self.ignoredFields = ignoredFields
    }

    /// nil when `got` matches `expected`; otherwise what differs, in words.
    public func difference(expected: [UInt8], got: [UInt8]) -> String? {
        let expectedType = WireMessage.type(expected), gotType = WireMessage.type(got)
        if expectedType != gotType {
            return "expected \(Self.name(expectedType)), got \(Self.name(gotType))"
        }
        switch mode {
        case .type:
            return nil
        case .exact:
            if expected == got { return nil }
            return Self.byteDifference(expected, got)
        case .fields:
            return fieldDifference(expected, got)
        }
    }

    private func fieldDifference(_ expected: [UInt8], _ got: [UInt8]) -> String? {
        let e = WireCodec.decode(expected), g = WireCodec.decode(got)
        guard e.name != nil, e.isComplete, g.isComplete else {
            // Unknown or undecodable messages have no fields to compare: fall back to bytes.
            return expected == got ? nil : Self.byteDifference(expected, got)
        }
        var left: [(String, String)] = [], right: [(String, String)] = []
        flatten(e.fields.json, path: "", into: &left)
        flatten(g.fields.json, path: "", into: &right)
        if !e.rest.isEmpty { left.append(("(trailing bytes)", HexString.encode(e.rest))) }
        if !g.rest.isEmpty { right.append(("(trailing bytes)", HexString.encode(g.rest))) }
        let l = Dictionary(left, uniquingKeysWith: { a, _ in a }), r = Dictionary(right, uniquingKeysWith: { a, _ in a })
        var differences: [String] = []
        var seen = Set<String>()
        for (path, _) in left + right where seen.insert(path).inserted {
            let a = l[path], b = r[path]
            if a == b { continue }
            differences.append("\(path): recorded \(Self.short(a)), live \(Self.short(b))")
        }
        return differences.isEmpty ? nil : differences.joined(separator: "; ")
    }

    /// Leaf values by dotted path, skipping ignored names and the derived `bits`/`names` of features.
    private func flatten(_ value: JSONValue, path: String, into out: inout [(String, String)]) {
        switch value {
        case .object(let pairs):
            if path.hasSuffix("features"), case .string(let hex)? = value["hex"] {
                out.append((path, hex))
                return
            }
            for (key, child) in pairs where !ignoredFields.contains(key) {
                flatten(child, path: path.isEmpty ? key : path + "." + key, into: &out)
            }
        case .array(let items):
            for (i, item) in items.enumerated() { flatten(item, path: "\(path)[\(i)]", into: &out) }
        default:
            out.append((path, value.description))
        }
    }

    static func byteDifference(_ expected: [UInt8], _ got: [UInt8]) -> String {
        let common = zip(expected, got).prefix { $0 == $1 }.count
        var text = "bytes differ from offset \(common)"
        if common < expected.count && common < got.count {
            text += String(format: " (recorded %02x, live %02x)", expected[common], got[common])
        }
        if expected.count != got.count { text += "; length recorded \(expected.count), live \(got.count)" }
        return text
    }

    static func name(_ type: UInt16?) -> String { type.map(describeType) ?? "a runt message" }

    static func short(_ value: String?) -> String {
        guard let value else { return "(absent)" }
        return value.count > 40 ? String(value.prefix(32)) + "...(\(value.count) chars)" : value
    }
}
