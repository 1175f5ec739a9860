/// Decodes and encodes Lightning messages with the generated catalogue.
///
/// JSON form of field values (what `lnrr decode --json` prints and `lnrr encode` accepts):
/// integers as numbers (u64 above 2^53 as decimal strings; both are accepted), byte fields as
/// lowercase hex, `utf8` arrays as strings, short_channel_id as `BLOCKxTXxOUTPUT`, subtypes as
/// objects, arrays as arrays, TLV streams as objects keyed by record name (unknown records by their
/// type number, with hex values), feature bitfields as `{"hex", "bits", "names"}` (only `hex` is
/// needed to encode). Length fields may be omitted when encoding: they are computed from the field
/// they count.
public enum WireCodec {
    /// Decodes a message (2-byte type + payload). Never throws: a malformed message gives what decoded,
    /// an error saying where and why, and the rest as bytes.
    public static func decode(_ bytes: [UInt8]) -> DecodedMessage {
        guard let type = WireMessage.type(bytes) else {
            return DecodedMessage(type: 0, name: nil, kind: .unknownEven, fields: [],
                                  error: DecodeIssue(field: "type", offset: 0, message: "a message needs at least its 2-byte type; got \(bytes.count) bytes"),
                                  warnings: [], rest: bytes)
        }
        let kind = MessageCatalogue.kind(of: type)
        guard let spec = MessageCatalogue.spec(of: type) else {
            return DecodedMessage(type: type, name: nil, kind: kind, fields: [], error: nil, warnings: [], rest: Array(bytes[2...]))
        }
        var reader = ByteReader(bytes: bytes, at: 2, end: bytes.count)
        var fields: [DecodedField] = []
        var error: DecodeIssue?
        var restStart = bytes.count
        do {
            try decodeFields(spec.fields, from: &reader, path: "", into: &fields)
        } catch let failure as DecodeFailure {
            error = DecodeIssue(field: failure.path, offset: failure.offset, message: failure.message)
            restStart = failure.fieldStart
        } catch {
            fatalError("decodeFields throws only DecodeFailure")
        }
        var warnings: [DecodeIssue] = []
        if error == nil && reader.at < reader.end {
            warnings.append(DecodeIssue(field: "(end)", offset: reader.at,
                                        message: "\(reader.end - reader.at) bytes after the last field (BOLT 1 allows extensions; a reader ignores them)"))
            restStart = reader.at
        }
        return DecodedMessage(type: type, name: spec.name, kind: kind, fields: fields, error: error, warnings: warnings,
                              rest: restStart < bytes.count ? Array(bytes[restStart...]) : [])
    }

    struct DecodeFailure: Error {
        var path: String
        var offset: Int
        var message: String
        /// Where the top-level field that failed began: the undecoded rest starts here.
        var fieldStart: Int
    }

    struct ByteReader {
        let bytes: [UInt8]
        var at: Int
        var end: Int

        var remaining: Int { end - at }

        mutating func take(_ n: Int, path: String) throws -> ArraySlice<UInt8> {
            guard n <= remaining else {
                throw DecodeFailure(path: path, offset: at, message: "truncated: needs \(n) bytes, \(remaining) left", fieldStart: at)
            }
            defer { at += n }
            return bytes[at..<at + n]
        }

        mutating func bigEndian(_ n: Int, path: String) throws -> UInt64 {
            try take(n, path: path).reduce(0) { $0 << 8 | UInt64($1) }
        }

        /// BOLT 1 bigsize: canonical (minimal) encodings only.
        mutating func bigsize(path: String) throws -> UInt64 {
            let start = at
            let first = try bigEndian(1, path: path)
            let value: UInt64, minimum: UInt64
            switch first {
            case 0xfd: value = try bigEndian(2, path: path); minimum = 0xfd
            case 0xfe: value = try bigEndian(4, path: path); minimum = 0x1_0000
            case 0xff: value = try bigEndian(8, path: path); minimum = 0x1_0000_0000
            default: return first
            }
            guard value >= minimum else {
                throw DecodeFailure(path: path, offset: start, message: "non-canonical bigsize \(value) (encoded in more bytes than needed)", fieldStart: start)
            }
            return value
        }
    }

    /// Decodes `specs` in order, appending to `fields` as each completes (so a failure keeps the rest).
    static func decodeFields(_ specs: [FieldSpec], from reader: inout ByteReader, path: String, into fields: inout [DecodedField]) throws {
        for spec in specs {
            let fieldPath = path.isEmpty ? spec.name : "\(path).\(spec.name)"
            let start = reader.at
            do {
                let value = try decodeField(spec, from: &reader, path: fieldPath, siblings: fields)
                fields.append(DecodedField(name: spec.name, value: value))
            } catch var failure as DecodeFailure {
                if path.isEmpty { failure.fieldStart = start }
                throw failure
            }
        }
    }

    static func decodeField(_ spec: FieldSpec, from reader: inout ByteReader, path: String, siblings: [DecodedField]) throws -> WireValue {
        let count: Int?
        switch spec.count {
        case .one: count = nil
        case .fixed(let n): count = n
        case .rest: count = -1
        case .field(let name):
            guard let sibling = siblings.last(where: { $0.name == name }), case .unsigned(let n) = sibling.value else {
                throw DecodeFailure(path: path, offset: reader.at, message: "its length field '\(name)' was not decoded", fieldStart: reader.at)
            }
            count = Int(n)
        }
        if case .tlvStream(let stream) = spec.kind {
            return .tlvStream(try decodeTLVStream(stream, from: &reader, path: path))
        }
        if case .opaque = spec.kind {
            return .bytes(Array(try reader.take(reader.remaining, path: path)))
        }
        if spec.isByteString, let count {
            let n = count < 0 ? reader.remaining : count
            let bytes = Array(try reader.take(n, path: path))
            if case .fundamental(.utf8) = spec.kind, let text = String(validating: bytes, as: UTF8.self) { return .text(text) }
            return .bytes(bytes)
        }
        guard let count else { return try decodeOne(spec.kind, from: &reader, path: path) }
        var values: [WireValue] = []
        if count < 0 {
            while reader.remaining > 0 { values.append(try decodeOne(spec.kind, from: &reader, path: "\(path)[\(values.count)]")) }
        } else {
            values.reserveCapacity(min(count, 4096))
            for i in 0..<count { values.append(try decodeOne(spec.kind, from: &reader, path: "\(path)[\(i)]")) }
        }
        return .array(values)
    }

    static func decodeOne(_ kind: FieldKind, from reader: inout ByteReader, path: String) throws -> WireValue {
        switch kind {
        case .fundamental(let f):
            switch f {
            case .byte, .u8: return .unsigned(try reader.bigEndian(1, path: path))
            case .u16: return .unsigned(try reader.bigEndian(2, path: path))
            case .u32: return .unsigned(try reader.bigEndian(4, path: path))
            case .u64: return .unsigned(try reader.bigEndian(8, path: path))
            case .s8: return .signed(Int64(Int8(truncatingIfNeeded: try reader.bigEndian(1, path: path))))
            case .s16: return .signed(Int64(Int16(truncatingIfNeeded: try reader.bigEndian(2, path: path))))
            case .s32: return .signed(Int64(Int32(truncatingIfNeeded: try reader.bigEndian(4, path: path))))
            case .s64: return .signed(Int64(bitPattern: try reader.bigEndian(8, path: path)))
            case .tu16, .tu32, .tu64:
                // Truncated integers take the rest of their record, minimally encoded.
                let maxBytes = f == .tu16 ? 2 : f == .tu32 ? 4 : 8
                let start = reader.at
                guard reader.remaining <= maxBytes else {
                    throw DecodeFailure(path: path, offset: start, message: "\(f.rawValue) longer than \(maxBytes) bytes", fieldStart: start)
                }
                let bytes = try reader.take(reader.remaining, path: path)
                guard bytes.first != 0 else {
                    throw DecodeFailure(path: path, offset: start, message: "\(f.rawValue) not minimally encoded (leading zero byte)", fieldStart: start)
                }
                return .unsigned(bytes.reduce(0) { $0 << 8 | UInt64($1) })
            case .bigsize, .varint: return .unsigned(try reader.bigsize(path: path))
            case .short_channel_id: return .shortChannelID(try reader.bigEndian(8, path: path))
            case .utf8: return .text(String(decoding: try reader.take(1, path: path), as: UTF8.self))
            case .sciddir_or_pubkey:
                guard reader.remaining > 0 else {
                    throw DecodeFailure(path: path, offset: reader.at, message: "truncated: needs 1 byte, 0 left", fieldStart: reader.at)
                }
                let first = reader.bytes[reader.at]
                return .bytes(Array(try reader.take(first <= 1 ? 9 : 33, path: path)))
            case .point, .point32, .signature, .sha256, .chain_hash, .channel_id:
                return .bytes(Array(try reader.take(f.fixedSize!, path: path)))
            }
        case .subtype(let name):
            guard let subtype = MessageCatalogue.subtypes[name] else { return .bytes([]) }
            var fields: [DecodedField] = []
            try decodeFields(subtype.fields, from: &reader, path: path, into: &fields)
            return .record(fields)
        case .tlvStream(let stream):
            return .tlvStream(try decodeTLVStream(stream, from: &reader, path: path))
        case .opaque:
            return .bytes(Array(try reader.take(reader.remaining, path: path)))
        }
    }

    /// BOLT 1 TLV stream: strictly increasing types, unknown even types are an error, unknown odd kept.
    static func decodeTLVStream(_ name: String, from reader: inout ByteReader, path: String) throws -> [TLVRecordValue] {
        let stream = MessageCatalogue.tlvStreams[name]
        var records: [TLVRecordValue] = []
        var previous: UInt64?
        while reader.remaining > 0 {
            let start = reader.at
            let type = try reader.bigsize(path: "\(path).type")
            if let previous, type <= previous {
                throw DecodeFailure(path: path, offset: start,
                                    message: type == previous ? "duplicate TLV record type \(type)" : "TLV record type \(type) after \(previous): types must increase",
                                    fieldStart: start)
            }
            previous = type
            let length = try reader.bigsize(path: "\(path).length")
            guard length <= UInt64(reader.remaining) else {
                throw DecodeFailure(path: path, offset: start, message: "TLV record \(type) claims \(length) bytes, \(reader.remaining) left", fieldStart: start)
            }
            let valueStart = reader.at
            let value = Array(try reader.take(Int(length), path: path))
            guard let spec = stream?.record(type: type) else {
                if type % 2 == 0 {
                    throw DecodeFailure(path: path, offset: start,
                                        message: "unknown even TLV record type \(type): BOLT 1 says a reader must fail the message", fieldStart: start)
                }
                records.append(TLVRecordValue(type: type, name: nil, fields: nil, raw: value))
                continue
            }
            var sub = ByteReader(bytes: reader.bytes, at: valueStart, end: valueStart + Int(length))
            var fields: [DecodedField] = []
            try decodeFields(spec.fields, from: &sub, path: "\(path).\(spec.name)", into: &fields)
            if sub.remaining > 0 {
                throw DecodeFailure(path: "\(path).\(spec.name)", offset: sub.at, message: "\(sub.remaining) bytes beyond the record's fields", fieldStart: start)
            }
            records.append(TLVRecordValue(type: type, name: spec.name, fields: fields, raw: value))
        }
        return records
    }
}
