/// A JSON value that keeps object key order and integers exactly (u64 values do not fit a Double),
/// for decoded messages and for building messages from named fields. It is lnrr's one JSON writer:
/// CLI `--json` lines, control-socket replies and events, hook input and recorded session events
/// are all written through ``write(into:)`` (compact, keys in the order given, deterministic).
public indirect enum JSONValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    /// An integer written without fraction or exponent, kept as its exact text.
    case integer(String)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public static func uint(_ value: UInt64) -> JSONValue { .integer(String(value)) }
    public static func int(_ value: Int64) -> JSONValue { .integer(String(value)) }
    public static func int(_ value: Int) -> JSONValue { .integer(String(value)) }
    /// A JSON number; non-finite values are written as `null` (JSON has no NaN or infinity).
    public static func double(_ value: Double) -> JSONValue { .number(value) }

    /// The value of `key` in an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let pairs) = self { return pairs.first { $0.0 == key }?.1 }
        return nil
    }

    /// Compact JSON text.
    public var description: String {
        var out = ""
        write(into: &out)
        return out
    }

    public func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let text): out += text
        case .number(let d): out += d.isFinite ? "\(d)" : "null"
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let values):
            out += "["
            for (i, v) in values.enumerated() {
                if i > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case .object(let pairs):
            out += "{"
            for (i, (k, v)) in pairs.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(k, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    /// Appends `s` as a quoted JSON string: `"`, `\` and control characters escaped (`\n`, `\r`,
    /// `\t`, else `\u00xx` lowercase), everything else as is (UTF-8, no `\u` for non-ASCII).
    public static func writeString(_ s: String, into out: inout String) {
        out += "\""
        // Most strings (hex payloads, names, ids) need no escape: appended whole, not scalar by scalar.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out += s
            out += "\""
            return
        }
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// How deep arrays and objects may nest in parsed text. Every JSON lnrr reads (control requests,
    /// hook and plugin replies, CLI arguments) is far shallower; the limit keeps a hostile line from
    /// exhausting the stack of the thread that parses it.
    public static let defaultMaxDepth = 64

    /// Parses JSON text; the error says where it went wrong. Nesting deeper than `maxDepth` is a
    /// ``SyntaxError``, never a crash.
    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws -> JSONValue {
        var parser = Parser(bytes: Array(text.utf8), maxDepth: maxDepth)
        parser.skipSpace()
        let value = try parser.value()
        parser.skipSpace()
        guard parser.at == parser.bytes.count else { throw parser.fail("unexpected text after the JSON value") }
        return value
    }

    /// A JSON syntax error at a character offset.
    public struct SyntaxError: Error, CustomStringConvertible {
        public let offset: Int
        public let message: String
        public var description: String { "invalid JSON at character \(offset): \(message)" }
    }

    private struct Parser {
        let bytes: [UInt8]
        let maxDepth: Int
        var at = 0
        var depth = 0

        func fail(_ message: String) -> SyntaxError { SyntaxError(offset: at, message: message) }

        mutating func skipSpace() {
            while at < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[at]) { at += 1 }
        }

        mutating func expect(_ literal: String, _ value: JSONValue) throws -> JSONValue {
            let l = Array(literal.utf8)
            guard at + l.count <= bytes.count, Array(bytes[at..<at + l.count]) == l else { throw fail("expected \(literal)") }
            at += l.count
            return value
        }

        mutating func value() throws -> JSONValue {
            guard at < bytes.count else { throw fail("unexpected end of input") }
            let opener = bytes[at]
            if opener == UInt8(ascii: "{") || opener == UInt8(ascii: "[") {
                guard depth < maxDepth else { throw fail("nested deeper than \(maxDepth) levels") }
                depth += 1
            }
            defer { if opener == UInt8(ascii: "{") || opener == UInt8(ascii: "[") { depth -= 1 } }
            switch opener {
            case UInt8(ascii: "{"):
                at += 1
                var pairs: [(String, JSONValue)] = []
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: "}") { at += 1; return .object(pairs) }
                while true {
                    skipSpace()
                    guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw fail("expected a key in quotes") }
                    let key = try string()
                    skipSpace()
                    guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    at += 1
                    skipSpace()
                    pairs.append((key, try value()))
                    skipSpace()
                    guard at < bytes.count else { throw fail("unterminated object") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    if bytes[at] == UInt8(ascii: "}") { at += 1; return .object(pairs) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                at += 1
                var values: [JSONValue] = []
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: "]") { at += 1; return .array(values) }
                while true {
                    skipSpace()
                    values.append(try value())
                    skipSpace()
                    guard at < bytes.count else { throw fail("unterminated array") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    if bytes[at] == UInt8(ascii: "]") { at += 1; return .array(values) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            default: return try number()
            }
        }

        mutating func number() throws -> JSONValue {
            let start = at
            var integral = true
            while at < bytes.count, let c = Optional(bytes[at]), (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x65 || c == 0x45 {
                if c == 0x2e || c == 0x65 || c == 0x45 { integral = false }
                at += 1
            }
            let text = String(decoding: bytes[start..<at], as: UTF8.self)
            guard !text.isEmpty else { throw fail("unexpected character") }
            if integral, Int64(text) != nil || UInt64(text) != nil { return .integer(text) }
            guard let d = Double(text) else { throw fail("bad number '\(text)'") }
            return .number(d)
        }

        mutating func string() throws -> String {
            at += 1
            var scalars = String.UnicodeScalarView()
            var raw: [UInt8] = []
            func flush() {
                if !raw.isEmpty { scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars); raw.removeAll() }
            }
            while at < bytes.count {
                let c = bytes[at]
                if c == UInt8(ascii: "\"") { at += 1; flush(); return String(scalars) }
                if c == UInt8(ascii: "\\") {
                    flush()
                    at += 1
                    guard at < bytes.count else { break }
                    let e = bytes[at]
                    at += 1
                    switch e {
                    case UInt8(ascii: "n"): scalars.append("\n")
                    case UInt8(ascii: "t"): scalars.append("\t")
                    case UInt8(ascii: "r"): scalars.append("\r")
                    case UInt8(ascii: "b"): scalars.append("\u{08}")
                    case UInt8(ascii: "f"): scalars.append("\u{0C}")
                    case UInt8(ascii: "u"):
                        var v = try hex4()
                        // A UTF-16 surrogate pair (\ud83d\ude00) is one scalar; a lone half is U+FFFD.
                        if (0xD800...0xDBFF).contains(v), at + 6 <= bytes.count,
                           bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") {
                            let save = at
                            at += 2
                            let low = try hex4()
                            if (0xDC00...0xDFFF).contains(low) {
                                v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                at = save
                            }
                        }
                        scalars.append(Unicode.Scalar(v) ?? "\u{FFFD}")
                    default: scalars.append(Unicode.Scalar(e))
                    }
                    continue
                }
                raw.append(c)
                at += 1
            }
            throw fail("unterminated string")
        }

        mutating func hex4() throws -> UInt32 {
            guard at + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[at..<at + 4], as: UTF8.self), radix: 16) else {
                throw fail("bad \\u escape")
            }
            at += 4
            return v
        }
    }
}
