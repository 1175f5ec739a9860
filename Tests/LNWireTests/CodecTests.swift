import Testing
@testable import LNWire

/// Field values that exercise every fundamental type, built from the catalogue itself.
struct SampleValues {
    var counter: UInt64 = 1

    mutating func bytes(_ n: Int) -> String {
        HexString.encode((0..<n).map { _ in counter &+= 0x9E37_79B9; return UInt8(truncatingIfNeeded: counter >> 7) })
    }

    mutating func fields(_ specs: [FieldSpec]) -> JSONValue {
        var pairs: [(String, JSONValue)] = []
        let counted = Set(specs.compactMap { spec -> String? in if case .field(let f) = spec.count { return f } else { return nil } })
        for spec in specs where !counted.contains(spec.name) {  // length fields are computed by the encoder
            pairs.append((spec.name, value(spec)))
        }
        return .object(pairs)
    }

    mutating func value(_ spec: FieldSpec) -> JSONValue {
        if case .tlvStream(let name) = spec.kind { return tlvStream(name) }
        if spec.isByteString {
            switch spec.count {
            case .fixed(let n): return .string(bytes(n))
            default: return .string(bytes(3))
            }
        }
        switch spec.count {
        case .one: return one(spec.kind)
        case .fixed(let n): return .array((0..<n).map { _ in one(spec.kind) })
        case .field, .rest: return .array([one(spec.kind), one(spec.kind)])
        }
    }

    mutating func one(_ kind: FieldKind) -> JSONValue {
        counter += 1
        let c = counter % 1000
        switch kind {
        case .fundamental(let f):
            switch f {
            case .byte, .u8: return .uint(c % 200 + 1)
            case .u16: return .uint(0xfffe - c % 100)
            case .u32: return .uint(0xfffffff0 - c)
            case .u64: return .string(String(UInt64.max - c))  // above 2^53: written as a string
            case .s8, .s16, .s32: return .int(-Int64(c % 100))
            case .s64: return .int(-1_000_000_007 * Int64(c))
            case .tu16: return .uint(0x100 + c % 0x100)
            case .tu32: return .uint(0x10000 + c)
            case .tu64: return .uint(0x1_0000_0000 + c)
            case .bigsize, .varint: return .uint([0xfc, 0xfd, 0x10000, 0x1_0000_0000][Int(c % 4)])
            case .short_channel_id: return .string("700000x\(c % 5000)x\(c % 7)")
            case .utf8: return .string("a")
            case .sciddir_or_pubkey: return .string("02" + bytes(32))
            case .point, .point32, .signature, .sha256, .chain_hash, .channel_id: return .string(bytes(f.fixedSize!))
            }
        case .subtype(let name): return fields(MessageCatalogue.subtypes[name]!.fields)
        case .tlvStream(let name): return tlvStream(name)
        case .opaque: return .string(bytes(5))
        }
    }

    mutating func tlvStream(_ name: String) -> JSONValue {
        guard let stream = MessageCatalogue.tlvStreams[name] else { return .object([]) }
        var pairs = stream.records.map { ($0.name, fields($0.fields)) }
        pairs.append(("1000001", .string(bytes(4))))  // an unknown odd record survives as type + hex
        return .object(pairs)
    }
}

@Suite("Message catalogue and codec")
struct CodecTests {
    @Test("the catalogue holds every peer message of the CSVs, with the spec's names")
    func catalogue() {
        #expect(MessageCatalogue.messages.count == 50)
        for (type, name) in [(16, "init"), (18, "ping"), (32, "open_channel"), (64, "open_channel2"), (66, "tx_add_input"),
                             (80, "splice_init"), (40, "closing_complete"), (41, "closing_sig"), (261, "query_short_channel_ids"),
                             (513, "onion_message"), (136, "channel_reestablish")] {
            #expect(MessageCatalogue.name(of: UInt16(type)) == name)
        }
        #expect(MessageCatalogue.type(named: "WIRE_COMMITMENT_SIGNED") == 132)
        #expect(MessageCatalogue.kind(of: 32769) == .custom)
        #expect(MessageCatalogue.kind(of: 101) == .unknownOdd && MessageCatalogue.kind(of: 100) == .unknownEven)
        #expect(MessageCatalogue.suggestions(for: "comitment_signed").first == "commitment_signed")
        let open = MessageCatalogue.spec(named: "open_channel")!
        #expect(open.fields.map(\.name).contains("funding_satoshis"))
    }

    @Test("every message type round-trips: encode from fields, decode, re-encode, same bytes")
    func roundTripEveryMessage() throws {
        var samples = SampleValues()
        for spec in MessageCatalogue.messages {
            let fields = samples.fields(spec.fields)
            let bytes = try WireCodec.encode(name: spec.name, fields: fields)
            let decoded = WireCodec.decode(bytes)
            #expect(decoded.isComplete, "\(spec.name): \(String(describing: decoded.error))")
            #expect(decoded.warnings.isEmpty && decoded.rest.isEmpty, "\(spec.name)")
            #expect(decoded.name == spec.name)
            #expect(decoded.fields.map(\.name) == spec.fields.map(\.name), "\(spec.name)")
            let again = try WireCodec.encode(name: spec.name, fields: decoded.fields.json)
            #expect(again == bytes, "\(spec.name)")
        }
    }

    @Test("BOLT 1 bigsize vectors")
    func bigsize() throws {
        // From BOLT 1's appendix: value -> encoding.
        let vectors: [(UInt64, String)] = [(0, "00"), (252, "fc"), (253, "fd00fd"), (65535, "fdffff"), (65536, "fe00010000"),
                                           (4294967295, "feffffffff"), (4294967296, "ff0000000100000000"),
                                           (18446744073709551615, "ffffffffffffffffff")]
        for (value, hex) in vectors {
            var out: [UInt8] = []
            WireCodec.putBigSize(value, &out)
            #expect(HexString.encode(out) == hex)
            var reader = WireCodec.ByteReader(bytes: HexString.decode(hex)!, at: 0, end: hex.count / 2)
            #expect(try reader.bigsize(path: "x") == value)
        }
        for bad in ["fd00fc", "fe0000ffff", "ff00000000ffffffff", "fd00", "feffff", "ffffffffff"] {
            var reader = WireCodec.ByteReader(bytes: HexString.decode(bad)!, at: 0, end: bad.count / 2)
            #expect(throws: WireCodec.DecodeFailure.self, "\(bad)") { try reader.bigsize(path: "x") }
        }
    }

    func initWith(tlvs: String) -> [UInt8] { HexString.decode("0010" + "0000" + "0000" + tlvs)! }

    @Test("malformed input: partial decodes with the reason, never a crash")
    func malformed() {
        // Truncated field.
        let truncated = WireCodec.decode(HexString.decode("0012000400")!)
        #expect(truncated.fields.map(\.name) == ["num_pong_bytes"])
        #expect(truncated.error?.field == "byteslen" && truncated.error?.offset == 4 && truncated.rest == [0])
        // TLVs out of order, duplicated, unknown even, bad bigsize, record longer than the message.
        let cases: [(String, String)] = [
            ("0302aaaa" + "0100", "after"),          // type 3 then type 1
            ("0100" + "0100", "duplicate"),
            ("0400", "unknown even TLV record type 4"),
            ("fd0001" + "00", "non-canonical"),
            ("0340aa", "claims"),
        ]
        for (tlvs, message) in cases {
            let decoded = WireCodec.decode(initWith(tlvs: tlvs))
            #expect(decoded.fields.map(\.name) == ["gflen", "globalfeatures", "flen", "features"], "\(tlvs)")
            #expect(decoded.error?.message.contains(message) == true, "\(tlvs): \(String(describing: decoded.error))")
            #expect(decoded.rest == HexString.decode(tlvs)!, "\(tlvs)")
        }
        // Unknown odd TLV: kept as type + hex.
        let odd = WireCodec.decode(initWith(tlvs: "0502abcd"))
        #expect(odd.isComplete)
        if case .tlvStream(let records)? = odd.fields.last?.value {
            #expect(records == [TLVRecordValue(type: 5, name: nil, fields: nil, raw: [0xab, 0xcd])])
        } else {
            Issue.record("no tlv stream")
        }
        // Trailing bytes after a message without TLVs: a warning, not an error (BOLT 1 extensions).
        let trailing = WireCodec.decode(HexString.decode("0012000400020000" + "beef")!)
        #expect(trailing.isComplete && trailing.warnings.count == 1 && trailing.rest == [0xbe, 0xef])
        // A non-minimal tu64 in a TLV record.
        // Runts and every prefix of a real message never crash.
        #expect(WireCodec.decode([0x01]).error != nil)
        var samples = SampleValues()
        for spec in MessageCatalogue.messages {
            let bytes = try! WireCodec.encode(name: spec.name, fields: samples.fields(spec.fields))
            for cut in stride(from: 2, to: bytes.count, by: max(1, bytes.count / 40)) {
                _ = WireCodec.decode(Array(bytes[..<cut]))
            }
        }
    }

    @Test("encoding errors name the field")
    func encodeErrors() {
        #expect(throws: EncodeError.self) { try WireCodec.encode(name: "pnig", fields: .object([])) }
        do {
            _ = try WireCodec.encode(name: "ping", fields: .object([("num_pong_bytes", .uint(1)), ("bogus", .uint(2))]))
            Issue.record("accepted a bogus field")
        } catch let error as EncodeError {
            #expect(error.field == "bogus" && error.message.contains("num_pong_bytes"))
        } catch { Issue.record("\(error)") }
        #expect(throws: EncodeError.self) { try WireCodec.encode(name: "ping", fields: .object([("ignored", .string("zz"))])) }
        #expect(throws: EncodeError.self) { try WireCodec.encode(name: "ping", fields: .object([("num_pong_bytes", .uint(70000))])) }
        #expect(throws: EncodeError.self) { try WireCodec.encode(name: "error", fields: .object([("data", .string(""))])) }  // channel_id missing
    }

    @Test("feature bits carry their BOLT 9 names")
    func features() {
        #expect(Features.describe([0x02, 0x01]) == ["option_data_loss_protect (required)", "var_onion_optin (optional)"])
        #expect(Features.describe([0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]) == ["bit 103"])
    }

    @Test("JSON parser keeps order and exact integers")
    func json() throws {
        let value = try JSONValue.parse(#"{"b": 18446744073709551615, "a": [true, null, "x\n", -3, 1.5]}"#)
        #expect(value.description == #"{"b":18446744073709551615,"a":[true,null,"x\n",-3,1.5]}"#)
        #expect(throws: JSONValue.SyntaxError.self) { try JSONValue.parse("{\"a\": }") }
    }
}
