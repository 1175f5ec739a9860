import LNWire

/// One-object-per-line output (`--json`), written by LNWire's ``JSONValue`` (the one JSON writer):
/// deterministic key order (as given), no Foundation round trip on hot paths. These are spelling
/// helpers only; the values are plain `JSONValue`s.
enum JSONLine {
    static func object(_ pairs: KeyValuePairs<String, JSONValue>) -> String {
        JSONValue.object(pairs.map { ($0.key, $0.value) }).description
    }

    static func render(_ value: JSONValue) -> String { value.description }
}

/// Lowercase hex of bytes, without Foundation.
enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        String(unsafeUninitializedCapacity: bytes.count * 2) { buffer in
            var i = 0
            for byte in bytes {
                buffer[i] = digits[Int(byte >> 4)]
                buffer[i + 1] = digits[Int(byte & 0x0f)]
                i += 2
            }
            return i
        }
    }

    /// Bytes of a hex string (either case, optional 0x, surrounding whitespace ignored); nil if malformed.
    static func decode(_ text: String) -> [UInt8]? {
        var s = Substring(text).drop(while: { $0.isWhitespace })
        while let last = s.last, last.isWhitespace { s = s.dropLast() }
        if s.hasPrefix("0x") || s.hasPrefix("0X") { s = s.dropFirst(2) }
        let utf8 = Array(s.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}
