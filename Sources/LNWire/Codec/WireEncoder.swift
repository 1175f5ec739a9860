/// Why a message could not be built from named fields.
public struct EncodeError: Error, Equatable, CustomStringConvertible {
    public var field: String
    public var message: String
    public var description: String { field.isEmpty ? message : "\(field): \(message)" }
}

extension WireCodec {
    /// Builds a message from its name and a JSON object of fields (the form `decode` produces).
    public static func encode(name: String, fields: JSONValue) throws -> [UInt8] {
        guard let spec = MessageCatalogue.spec(named: name) else {
            let suggestions = MessageCatalogue.suggestions(for: name)
            throw EncodeError(field: "", message: "unknown message '\(name)'" + (suggestions.isEmpty ? "" : "; did you mean \(suggestions.joined(separator: ", "))?"))
        }
        var out: [UInt8] = [UInt8(spec.type >> 8), UInt8(spec.type & 0xff)]
        try encodeFields(spec.fields, from: fields, path: "", into: &out)
        return out
    }

    /// Encodes a message's fields (no type), e.g. to replace selected fields of a decoded message.
    public static func encode(type: UInt16, fields: JSONValue) throws -> [UInt8] {
        guard let spec = MessageCatalogue.spec(of: type) else {
            throw EncodeError(field: "", message: "type \(type) is not a BOLT message; give the message as hex instead")
        }
        return try encode(name: spec.name, fields: fields)
    }

    static func encodeFields(_ specs: [FieldSpec], from json: JSONValue, path: String, into out: inout [UInt8]) throws {
        guard case .object(let pairs) = json else { throw EncodeError(field: path, message: "expected an object of fields") }
        let known = Set(specs.map(\.name))
        if let extra = pairs.first(where: { !known.contains($0.0) }) {
            throw EncodeError(field: path.isEmpty ? extra.0 : "\(path).\(extra.0)",
                              message: "no such field; fields are \(specs.map(\.name).joined(separator: ", "))")
        }
        // Length fields may be left out: they are computed from the field they count.
        var lengths: [String: Int] = [:]
        for spec in specs {
            guard case .field(let lengthField) = spec.count else { continue }
            // An absent counted field is empty, and so its length is 0.
            lengths[lengthField] = try json[spec.name].map { try elementCount(of: $0, spec: spec, path: path) } ?? 0
        }
        for spec in specs {
            let fieldPath = path.isEmpty ? spec.name : "\(path).\(spec.name)"
            var value = json[spec.name]
            if let computed = lengths[spec.name] {
                if let given = value {
                    guard let number = try? unsigned(given, path: fieldPath), number == UInt64(computed) else {
                        throw EncodeError(field: fieldPath, message: "says \(given) but the field it counts has \(computed) elements")
                    }
                }
                value = .integer(String(computed))
            }
            if value == nil {
                if case .tlvStream = spec.kind { continue }  // an absent stream is an empty one
                if case .field = spec.count { value = spec.isByteString ? .string("") : .array([]) }
                if spec.count == .rest { value = spec.isByteString ? .string("") : .array([]) }
            }
            guard let value else { throw EncodeError(field: fieldPath, message: "missing") }
            try encodeField(spec, value, path: fieldPath, into: &out)
        }
    }

    static func elementCount(of value: JSONValue, spec: FieldSpec, path: String) throws -> Int {
        if spec.isByteString {
            if case .fundamental(.utf8) = spec.kind, case .string(let s) = value { return s.utf8.count }
            return try bytes(value, path: path).count
        }
        guard case .array(let values) = value else { throw EncodeError(field: path.isEmpty ? spec.name : "\(path).\(spec.name)", message: "expected an array") }
        return values.count
    }

    static func encodeField(_ spec: FieldSpec, _ value: JSONValue, path: String, into out: inout [UInt8]) throws {
        if case .tlvStream(let stream) = spec.kind { return try encodeTLVStream(stream, value, path: path, into: &out) }
        if case .opaque = spec.kind { return out += try bytes(value, path: path) }
        if spec.isByteString {
            if case .fundamental(.utf8) = spec.kind, case .string(let s) = value, HexString.decode(s) == nil || s.isEmpty {
                out += Array(s.utf8)
            } else {
                let b = try bytes(value, path: path)
                if case .fixed(let n) = spec.count, b.count != n { throw EncodeError(field: path, message: "needs exactly \(n) bytes, got \(b.count)") }
                out += b
            }
            return
        }
        if spec.count == .one { return try encodeOne(spec.kind, value, path: path, into: &out) }
        guard case .array(let values) = value else { throw EncodeError(field: path, message: "expected an array") }
        if case .fixed(let n) = spec.count, values.count != n { throw EncodeError(field: path, message: "needs exactly \(n) elements") }
        for (i, v) in values.enumerated() { try encodeOne(spec.kind, v, path: "\(path)[\(i)]", into: &out) }
    }

    static func encodeOne(_ kind: FieldKind, _ value: JSONValue, path: String, into out: inout [UInt8]) throws {
        switch kind {
        case .fundamental(let f):
            switch f {
            case .byte, .u8: try put(unsigned(value, path: path, max: 0xff), 1, &out)
            case .u16: try put(unsigned(value, path: path, max: 0xffff), 2, &out)
            case .u32: try put(unsigned(value, path: path, max: 0xffff_ffff), 4, &out)
            case .u64: try put(unsigned(value, path: path), 8, &out)
            case .s8, .s16, .s32, .s64:
                let size = f.fixedSize!
                let v = try signed(value, path: path)
                let limit = Int64(1) << (size * 8 - 1)
                guard size == 8 || (v >= -limit && v < limit) else { throw EncodeError(field: path, message: "\(v) does not fit \(f.rawValue)") }
                put(UInt64(bitPattern: v), size, &out)
            case .tu16, .tu32, .tu64:
                let max: UInt64 = f == .tu16 ? 0xffff : f == .tu32 ? 0xffff_ffff : .max
                var v = try unsigned(value, path: path, max: max)
                var bytes: [UInt8] = []
                while v > 0 { bytes.insert(UInt8(v & 0xff), at: 0); v >>= 8 }
                out += bytes
            case .bigsize, .varint: putBigSize(try unsigned(value, path: path), &out)
            case .short_channel_id:
                if case .string(let s) = value, let v = ShortChannelID.parse(s) { put(v, 8, &out) }
                else { put(try unsigned(value, path: path), 8, &out) }
            case .utf8:
                guard case .string(let s) = value, s.utf8.count == 1 else { throw EncodeError(field: path, message: "expected a one-byte string") }
                out += Array(s.utf8)
            case .sciddir_or_pubkey:
                let b = try bytes(value, path: path)
                guard (b.first.map { $0 <= 1 } ?? false) ? b.count == 9 : b.count == 33 else {
                    throw EncodeError(field: path, message: "expected 9 bytes (sciddir) or 33 bytes (point)")
                }
                out += b
            case .point, .point32, .signature, .sha256, .chain_hash, .channel_id:
                let b = try bytes(value, path: path)
                guard b.count == f.fixedSize! else { throw EncodeError(field: path, message: "\(f.rawValue) is \(f.fixedSize!) bytes, got \(b.count)") }
                out += b
            }
        case .subtype(let name):
            guard let subtype = MessageCatalogue.subtypes[name] else { throw EncodeError(field: path, message: "unknown subtype \(name)") }
            try encodeFields(subtype.fields, from: value, path: path, into: &out)
        case .tlvStream(let stream):
            try encodeTLVStream(stream, value, path: path, into: &out)
        case .opaque:
            out += try bytes(value, path: path)
        }
    }

    static func encodeTLVStream(_ name: String, _ value: JSONValue, path: String, into out: inout [UInt8]) throws {
        guard case .object(let pairs) = value else { throw EncodeError(field: path, message: "expected an object of TLV records") }
        let stream = MessageCatalogue.tlvStreams[name]
        var records: [(UInt64, [UInt8])] = []
        for (key, recordValue) in pairs {
            let recordPath = "\(path).\(key)"
            if let spec = stream?.record(named: key) {
                var body: [UInt8] = []
                try encodeFields(spec.fields, from: recordValue, path: recordPath, into: &body)
                records.append((spec.type, body))
            } else if let type = UInt64(key) {
                records.append((type, try bytes(recordValue, path: recordPath)))
            } else {
                let names = stream?.records.map(\.name) ?? []
                throw EncodeError(field: recordPath, message: "no such TLV record; records are \(names.joined(separator: ", ")) or a type number")
            }
        }
        records.sort { $0.0 < $1.0 }
        for (i, record) in records.enumerated() where i > 0 && records[i - 1].0 == record.0 {
            throw EncodeError(field: path, message: "TLV record type \(record.0) given twice")
        }
        for (type, body) in records {
            putBigSize(type, &out)
            putBigSize(UInt64(body.count), &out)
            out += body
        }
    }

    // MARK: JSON scalars

    static func unsigned(_ value: JSONValue, path: String, max: UInt64 = .max) throws -> UInt64 {
        let text: String
        switch value {
        case .integer(let t): text = t
        case .string(let t): text = t
        default: throw EncodeError(field: path, message: "expected an unsigned integer, got \(value)")
        }
        guard let v = UInt64(text) else { throw EncodeError(field: path, message: "'\(text)' is not an unsigned integer") }
        guard v <= max else { throw EncodeError(field: path, message: "\(v) is larger than \(max)") }
        return v
    }

    static func signed(_ value: JSONValue, path: String) throws -> Int64 {
        switch value {
        case .integer(let t), .string(let t):
            if let v = Int64(t) { return v }
        default: break
        }
        throw EncodeError(field: path, message: "expected an integer, got \(value)")
    }

    static func bytes(_ value: JSONValue, path: String) throws -> [UInt8] {
        if case .string(let s) = value, let b = HexString.decode(s) { return b }
        if case .object = value, case .string(let s)? = value["hex"], let b = HexString.decode(s) { return b }
        throw EncodeError(field: path, message: "expected hex, got \(value)")
    }

    static func put(_ v: UInt64, _ size: Int, _ out: inout [UInt8]) {
        for i in stride(from: size - 1, through: 0, by: -1) { out.append(UInt8(truncatingIfNeeded: v >> (UInt64(i) * 8))) }
    }

    static func putBigSize(_ v: UInt64, _ out: inout [UInt8]) {
        switch v {
        case ..<0xfd: out.append(UInt8(v))
        case ..<0x1_0000: out.append(0xfd); put(v, 2, &out)
        case ..<0x1_0000_0000: out.append(0xfe); put(v, 4, &out)
        default: out.append(0xff); put(v, 8, &out)
        }
    }
}
