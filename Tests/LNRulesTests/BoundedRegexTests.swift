import Foundation
import LNWire
import Testing
@testable import LNRules

/// `payload_regex` in linear time (issue #14, finding 5). NSRegularExpression (ICU) is the
/// independent reference for what a pattern matches; the pathological patterns are the ones that
/// stalled an event loop.
@Suite("payload_regex: bounded matching")
struct BoundedRegexTests {
    /// Patterns within the supported syntax, each checked against ICU on many texts.
    static let patterns = [
        "^00+$", "00", "^0012", "ca(fe|be)", "[0-3]{4}", "^(00)*1", "(ab|a)(bc|c)?$", "a.c", "[^0]{3}", "\\d{2}f",
        "^$", "0{2,5}1", "(?:01)+", "x?", "^[a-f]+$", "(0|1)*2$", "(?<n>ff)00", "^.{6}$", "1{3,}", "\\w\\W?", "0*?1",
        "[\\d]", "[a\\-f]", "e$", "^(0*)*1", "(a|b|)c",
    ]

    static func texts() -> [String] {
        var generator = SystemRandomNumberGenerator()
        var texts = ["", "0", "00", "001", "0012cafe", "cafebabe", "000000", "1", "abc", "abcc", "0000000000000000001",
                     "2", "ff00", "ffff00", "0002", "a-f", "e", "111", "012345"]
        for _ in 0..<200 {
            let alphabet = Array("0012abcef-")
            texts.append(String((0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }))
        }
        return texts
    }

    @Test("agrees with NSRegularExpression on supported patterns", arguments: patterns)
    func agreesWithICU(pattern: String) throws {
        let bounded = try BoundedRegex(pattern)
        let icu = try NSRegularExpression(pattern: pattern)
        for text in Self.texts() {
            let expected = icu.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
            #expect(bounded.matches(Array(text.utf8)) == expected, "/\(pattern)/ on '\(text)'")
        }
    }

    @Test("matchesHex sees the payload's lowercase hex")
    func hex() throws {
        #expect(try BoundedRegex("^cafe").matchesHex(of: [0xCA, 0xFE, 0x01]))
        #expect(try BoundedRegex("fe01$").matchesHex(of: [0xCA, 0xFE, 0x01][...]))
        #expect(try !BoundedRegex("CAFE").matchesHex(of: [0xCA, 0xFE]))
        #expect(try BoundedRegex("^$").matchesHex(of: [UInt8]()))
    }

    @Test("catastrophic-backtracking patterns finish in linear time", .timeLimit(.minutes(1)))
    func catastrophic() throws {
        let zeros = [UInt8](repeating: 0, count: 65_535)  // 131,070 hex zeros, no '1'
        for pattern in ["(0*)*1", "(0|00)*1", "(0+)+1", "(0|0)*1$", "^(0?){30}0{30}1"] {
            let regex = try BoundedRegex(pattern)
            let started = Date()
            #expect(!regex.matchesHex(of: zeros))
            #expect(Date().timeIntervalSince(started) < 10, "\(pattern) took \(Date().timeIntervalSince(started)) s")
        }
        #expect(try BoundedRegex("(0*)*1").matchesHex(of: zeros + [0x01]))
    }

    @Test("what needs backtracking is refused with the position of the construct")
    func refused() {
        let cases: [(String, Int, String)] = [
            ("(0)\\1", 4, "backreferences"), ("a(?=b)", 2, "lookaround"), ("a(?!b)", 2, "lookaround"),
            ("(?<=a)b", 1, "lookaround"), ("(?>a)", 1, "atomic"), ("a++", 3, "possessive"), ("(?i)a", 1, "inline flags"),
            ("a{1001}", 2, "above 1000"), ("(a", 1, "missing ')'"), ("*a", 1, "nothing to repeat"), ("[a-", 1, "missing ']'"),
        ]
        for (pattern, column, words) in cases {
            do {
                _ = try BoundedRegex(pattern)
                Issue.record("/\(pattern)/ was accepted")
            } catch let error as BoundedRegex.SyntaxError {
                #expect(error.offset + 1 == column, "/\(pattern)/: \(error)")
                #expect(error.description.contains(words), "/\(pattern)/: \(error)")
            } catch {
                Issue.record("\(error)")
            }
        }
    }

    @Test("rules check: a backreference gets a FILE:LINE:COL diagnostic; (0*)*1 is accepted and bounded")
    func ruleFile() throws {
        let (set, diagnostics) = RuleParser.parse(yaml: "rules:\n  - name: r\n    match: {payload_regex: '(00)\\1'}\n    action: drop\n", file: "t.yaml")
        #expect(set == nil)
        #expect(diagnostics.map(\.description).contains { $0.hasPrefix("t.yaml:3:") && $0.contains("backreferences") }, "\(diagnostics)")

        let (ok, none) = RuleParser.parse(yaml: "rules:\n  - name: r\n    match: {payload_regex: '(0*)*1'}\n    action: drop\n", file: "t.yaml")
        #expect(none.isEmpty)
        var engine = RuleEngine(rules: try #require(ok))
        let bytes: [UInt8] = [0x80, 0x01] + [UInt8](repeating: 0, count: 1500)
        let started = Date()
        let decision = engine.decide(MessageContext(direction: .aToB, bytes: bytes, phaseBefore: .channel, phaseAfter: .channel,
                                                    changes: [], nodeA: nil, nodeB: nil))
        #expect(decision.annotations.isEmpty)
        #expect(Date().timeIntervalSince(started) < 5)
    }
}
