import LNWire

/// Translates Core Lightning dev-disconnect files into rule files.
///
/// A dev-disconnect file is read in order: each line fires once, on the N-th (`*N`, default 1)
/// matching message after the previous line fired, and then the next line becomes active. That
/// becomes a chain of rules: each `after:` the previous, `nth: N`, `count: 1`.
public enum DevDisconnect {
    /// A line that cannot be translated.
    public struct LineError: Error, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    /// The rule file (YAML) equivalent to `text`, as if the file had been given to node `side`
    /// (`a` or `b`): that node's outgoing messages go `a->b` when it is a.
    public static func translate(_ text: String, file: String, asNode side: String) throws -> String {
        let outgoing = side == "a" ? "a->b" : "b->a"
        let incoming = side == "a" ? "b->a" : "a->b"
        var out = "# Translated by `lnrr rules import-dev-disconnect` from \(file), as if given to node \(side).\n"
        out += "# Each line fires once, in order: a rule is active only after the previous one fired.\n"
        out += "rules:\n"
        var previous: String?
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let symbol = line.first else { continue }
            var body = String(line.dropFirst())
            var nth = 1
            if let star = body.firstIndex(of: "*") {
                guard let n = Int(body[body.index(after: star)...]), n >= 1 else {
                    throw LineError(line: number + 1, message: "'\(line)': *N needs a whole number of at least 1")
                }
                nth = n
                body = String(body[..<star])
            }
            guard body.hasPrefix("WIRE_") else {
                throw LineError(line: number + 1, message: "'\(line)': expected a prefix (- + $ 0 x < =) and a WIRE_ name")
            }
            guard let type = MessageCatalogue.type(named: body), let name = MessageCatalogue.name(of: type) else {
                let s = MessageCatalogue.suggestions(for: body)
                throw LineError(line: number + 1, message: "'\(body)' is not a BOLT message" + (s.isEmpty ? "" : " (did you mean \(s.map { "WIRE_" + $0.uppercased() }.joined(separator: ", "))?)"))
            }
            let action: String
            let direction: String
            if symbol == "=" {
                action = "{mark: \"dev-disconnect placeholder \(line)\"}"
                direction = outgoing
            } else if let kind = DisconnectKind(symbol: symbol) {
                action = "{disconnect: \(kind.rawValue)}"
                direction = kind == .afterReceive ? incoming : outgoing
            } else {
                throw LineError(line: number + 1, message: "'\(line)': unknown prefix '\(symbol)' (use - + $ 0 x < =)")
            }
            let ruleName = "line\(number + 1)"
            out += "  # \(file):\(number + 1): \(line)\n"
            out += "  - name: \(ruleName)\n"
            out += "    match: {type: \(name), dir: \"\(direction)\", nth: \(nth), count: 1\(previous.map { ", after: \($0)" } ?? "")}\n"
            out += "    action: \(action)\n"
            previous = ruleName
        }
        if previous == nil { out += "  []\n".replacingOccurrences(of: "  []", with: "") ; out = out.replacingOccurrences(of: "rules:\n", with: "rules: []\n") }
        return out
    }
}
