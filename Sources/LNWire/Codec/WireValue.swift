/// Callers of LNWire get the one hex codec (HexString) without importing LNHex themselves.
@_exported import LNHex

/// A decoded field value.
public indirect enum WireValue: Sendable, Equatable {
    /// u8..u64, tu16..tu64, bigsize.
    case unsigned(UInt64)
    /// s8..s64.
    case signed(Int64)
    /// Byte arrays and fixed-size byte types (point, signature, sha256, chain_hash, channel_id, ...).
    case bytes([UInt8])
    /// An array of `utf8`.
    case text(String)
    /// A short_channel_id, shown as BLOCKxTXxOUTPUT.
    case shortChannelID(UInt64)
    /// Several values of a non-byte type.
    case array([WireValue])
    /// One instance of a subtype.
    case record([DecodedField])
    /// A TLV stream's records, in order.
    case tlvStream([TLVRecordValue])
}

/// A named field and its value.
public struct DecodedField: Sendable, Equatable {
    public var name: String
    public var value: WireValue
}

/// One TLV record: known ones are named and decoded, unknown ones kept as raw bytes.
public struct TLVRecordValue: Sendable, Equatable {
    public var type: UInt64
    public var name: String?
    /// Decoded fields of a known record; nil for unknown records.
    public var fields: [DecodedField]?
    /// The record's value bytes.
    public var raw: [UInt8]
}

/// What went wrong (or is worth noting) while decoding, and where.
public struct DecodeIssue: Sendable, Equatable, CustomStringConvertible {
    /// Dotted path of the field, e.g. `tlvs.networks.chains`.
    public var field: String
    /// Byte offset in the message (type included).
    public var offset: Int
    public var message: String

    public var description: String { "\(field) at byte \(offset): \(message)" }
}

/// A message decoded as far as it would go.
public struct DecodedMessage: Sendable, Equatable {
    public var type: UInt16
    public var name: String?
    public var kind: MessageKind
    /// Fields that decoded, in order.
    public var fields: [DecodedField]
    /// Why decoding stopped early, if it did.
    public var error: DecodeIssue?
    /// Things that do not stop decoding (e.g. bytes after the last field, which BOLT 1 allows).
    public var warnings: [DecodeIssue]
    /// Bytes not decoded: after an error, or trailing bytes.
    public var rest: [UInt8]

    public var isComplete: Bool { error == nil }
}

extension WireValue {
    /// u64 values above 2^53 do not survive JSON readers that use doubles; they are written as strings.
    static let maxExactJSONInteger: UInt64 = 1 << 53

    /// The JSON form documented on `WireCodec`.
    public func json(fieldName: String) -> JSONValue {
        switch self {
        case .unsigned(let v): return v <= Self.maxExactJSONInteger ? .uint(v) : .string(String(v))
        case .signed(let v): return .int(v)
        case .bytes(let b):
            if Features.fieldNames.contains(fieldName) {
                return .object([("hex", .string(HexString.encode(b))),
                                ("bits", .array(Features.bits(b).map { .integer(String($0)) })),
                                ("names", .array(Features.describe(b).map { .string($0) }))])
            }
            return .string(HexString.encode(b))
        case .text(let s): return .string(s)
        case .shortChannelID(let v): return .string(ShortChannelID.format(v))
        case .array(let values): return .array(values.map { $0.json(fieldName: fieldName) })
        case .record(let fields): return fields.json
        case .tlvStream(let records):
            return .object(records.map { record in
                if let fields = record.fields, let name = record.name { return (name, fields.json) }
                return (String(record.type), .string(HexString.encode(record.raw)))
            })
        }
    }
}

extension [DecodedField] {
    /// `{"field": value, ...}` in field order.
    public var json: JSONValue { .object(map { ($0.name, $0.value.json(fieldName: $0.name)) }) }
}

extension DecodedMessage {
    /// `{"type":N,"name":...,"kind":...,"fields":{...},"error":...,"rest":hex}`.
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("type", .integer(String(type))),
            ("name", name.map { .string($0) } ?? .null),
            ("kind", .string(kind.rawValue)),
            ("fields", fields.json),
        ]
        if let error { pairs.append(("error", .object([("field", .string(error.field)), ("offset", .integer(String(error.offset))), ("message", .string(error.message))]))) }
        if !warnings.isEmpty { pairs.append(("warnings", .array(warnings.map { .string($0.description) }))) }
        if !rest.isEmpty { pairs.append(("rest", .string(HexString.encode(rest)))) }
        return .object(pairs)
    }
}

/// short_channel_id as BOLT 7 shows it: block height, transaction index, output index.
public enum ShortChannelID {
    public static func format(_ v: UInt64) -> String { "\(v >> 40)x\((v >> 16) & 0xFF_FFFF)x\(v & 0xFFFF)" }

    public static func parse(_ text: String) -> UInt64? {
        let parts = text.split(separator: "x")
        guard parts.count == 3, let block = UInt64(parts[0]), let tx = UInt64(parts[1]), let out = UInt64(parts[2]),
              block < 1 << 24, tx < 1 << 24, out < 1 << 16 else { return nil }
        return block << 40 | tx << 16 | out
    }
}
