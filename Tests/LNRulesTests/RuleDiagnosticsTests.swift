import LNWire
import Testing
@testable import LNRules

/// What `lnrr rules check` says about mistakes a newcomer makes (issue #12, item 12), and the
/// directions a rule file accepts without shell quoting (item 4).
@Suite("Rule file diagnostics")
struct RuleDiagnosticsTests {
    func diagnose(_ yaml: String) -> (RuleSet?, [String]) {
        let (set, d) = RuleParser.parse(yaml: yaml, file: "t.yaml")
        return (set, d.map(\.description))
    }

    @Test("an unknown field name gets the nearest real names, whatever the key order and with no type")
    func unknownFieldSuggestions() {
        // `fields` before `type`: checked against ping all the same.
        var (set, lines) = diagnose("rules:\n  - match: {fields: {num_pong_byte: 3}, type: ping}\n    action: drop\n")
        #expect(set == nil)
        #expect(lines.contains { $0.hasPrefix("t.yaml:2:22: error:") && $0.contains("field 'num_pong_byte'") && $0.contains("did you mean num_pong_bytes") }, "\(lines)")
        // No `type`: checked against every BOLT message's fields.
        (set, lines) = diagnose("rules:\n  - match: {fields: {chanel_id: '00'}}\n    action: drop\n")
        #expect(set == nil)
        #expect(lines.contains { $0.contains("no BOLT message has a field 'chanel_id'") && $0.contains("did you mean channel_id") }, "\(lines)")
        // `action` before `match`: the replacement's fields are still checked against the type.
        (set, lines) = diagnose("rules:\n  - action: {replace: {fields: {num_pong_bites: 1}}}\n    match: {type: ping}\n")
        #expect(set == nil)
        #expect(lines.contains { $0.contains("field 'num_pong_bites'") && $0.contains("did you mean num_pong_bytes") }, "\(lines)")
        // Nothing close: the fields there are.
        (set, lines) = diagnose("rules:\n  - match: {type: ping, fields: {zzzzzzzzzz: 1}}\n")
        #expect(lines.contains { $0.contains("field 'zzzzzzzzzz'") && $0.contains("its fields are") && $0.contains("ignored, num_pong_bytes") }, "\(lines)")
        // A valid field is still accepted in every order.
        (set, lines) = diagnose("rules:\n  - match: {fields: {num_pong_bytes: 3}, type: ping}\n    action: drop\n")
        #expect(set != nil, "\(lines)")
    }

    @Test("a base-60 or oversized number is an error, not a crash; underscores and hex are whole numbers")
    func numbersThatOverflow() {
        // Yams' own integer reading traps on these (found by the rules fuzzer).
        for number in ["1:2:3:4:5:6:7:8:9:10:11:12:13", "9999999999999999:59:59", "99999999999999999999", "-9223372036854775807:59"] {
            var (set, lines) = diagnose("seed: \(number)\nrules: []\n")
            #expect(set == nil && lines.contains { $0.hasPrefix("t.yaml:1:7: error:") && $0.contains("seed must be") }, "\(lines)")
            (set, lines) = diagnose("rules:\n  - match: {nth: \(number)}\n    action: {delay: \(number)}\n")
            #expect(set == nil && lines.contains { $0.contains("nth must be a whole number") }, "\(lines)")
            #expect(lines.contains { $0.contains("delay is a number of milliseconds") }, "\(lines)")
        }
        let (set, lines) = diagnose("seed: 0x2a\nrules:\n  - match: {nth: 1_000}\n    action: {bandwidth: 1_000_000}\n")
        #expect(set?.seed == 42, "\(lines)")
        #expect(lines.isEmpty, "\(lines)")
        #expect(diagnose("seed: 1__0\nrules: []\n").0 == nil)
        #expect(diagnose("seed: _1\nrules: []\n").0 == nil)
    }

    @Test("keys that are collections are refused at once, with their place; the fuzzer's 467-byte hang ends in milliseconds")
    func collectionKeysAreRefused() {
        // Found by the rules fuzzer: nested `? -` keys that made Yams' duplicate-key check take minutes.
        let hang: [UInt8] = [
            0x72, 0x75, 0x3a, 0x0a, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x2d, 0x22, 0x6e, 0x5d, 0xdd, 0x73,
            0x3a, 0x0a, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20,
            0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x6c, 0x3f, 0x65, 0x20, 0x75, 0x33, 0x74, 0x5f, 0x73,
            0x3a, 0x0a, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20,
            0x2d, 0x22, 0x6e, 0x5d, 0xdd, 0x73, 0x3a, 0x0a, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20,
            0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f,
            0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20,
            0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20,
            0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x22, 0x6e, 0x5d,
            0xdd, 0x73, 0x3a, 0x0a, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20,
            0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f,
            0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20,
            0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20,
            0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x22, 0x6e, 0x5d, 0xdd, 0x73, 0x3a, 0x0a, 0x20, 0x3f, 0x20, 0x2d,
            0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f,
            0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x63, 0x68, 0x61, 0x6e, 0x6e,
            0x65, 0x6c, 0x5f, 0x72, 0x65, 0x73, 0x65, 0x72, 0x76, 0x65, 0x5f, 0x73, 0x61, 0x74, 0x20, 0x3f,
            0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x22, 0x6e, 0x5d, 0xdd, 0x73, 0x3a, 0x0a, 0x20,
            0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d,
            0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f,
            0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20,
            0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f,
            0x20, 0x3f, 0x20, 0x2d, 0x22, 0x6e, 0x5d, 0xdd, 0x73, 0x3a, 0x0a, 0x20, 0x3f, 0x20, 0x2d, 0x20,
            0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20,
            0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f,
            0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20,
            0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f, 0x20, 0x2d, 0x22, 0x6e, 0x5d, 0xdd,
            0x73, 0x3a, 0x0a, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x20, 0x3f, 0x20, 0x2d, 0x20, 0x3f, 0x20, 0x3f,
            0x20, 0x3f, 0x20, 0x2d, 0x20, 0x6f, 0x73, 0x68, 0x69, 0x20, 0x73, 0x3a, 0x0a, 0x72, 0x75, 0x6c,
            0x65, 0x20, 0x73,
        ]
        let started = ContinuousClock.now
        var (set, lines) = diagnose(String(decoding: hang, as: UTF8.self))
        #expect(ContinuousClock.now - started < .seconds(2))
        #expect(set == nil && lines.first?.hasPrefix("t.yaml:2:2: error: a key here is an explicit key") == true, "\(lines)")
        for (yaml, place, what) in [("rules: []\n? [a]\n: b\n", "2:1", "an explicit key"),
                                    ("rules: []\n[a, b]: c\n", "2:6", "a flow collection"),
                                    ("rules: [{a: 1}, {{x: 1}: 2}]\n", "1:23", "a flow collection"),
                                    ("x: &k [1]\n*k : 2\nrules: []\n", "2:1", "an alias")] {
            (set, lines) = diagnose(yaml)
            #expect(set == nil && lines.first?.hasPrefix("t.yaml:\(place): error: a key here is \(what)") == true, "\(yaml) -> \(lines)")
        }
        // Question marks, brackets and colons in quoted, block and plain scalars and in comments are
        // not keys.
        let fine = """
            # a comment with ? a key and [a]: b
            seed: 7
            rules:
              - name: "what? [x]: y"
                match: {type: ping, payload_regex: '^(a|b)? [0-9]+$'}  # ? here too
                action: [{inject: {name: ping, fields: {num_pong_bytes: 4, ignored: ""}, when: after}}, {mark: 'x'': ? y'}]
              - name: why ? not
                action: {mark: "[a]: b"}
                match:
                  type: pong
            """
        (set, lines) = diagnose(fine)
        #expect(set != nil && set?.rules.count == 2, "\(lines)")
    }

    @Test("duplicate rule names are errors that point at both rules")
    func duplicateNames() {
        var (set, lines) = diagnose("""
            rules:
              - name: cut
                match: {type: ping}
                action: drop
              - name: cut
                match: {type: pong}
                action: drop
            """)
        #expect(set == nil)
        #expect(lines.contains { $0.hasPrefix("t.yaml:5:11: error: two rules are named 'cut'") && $0.contains("line 2:11") }, "\(lines)")
        // A given name that clashes with a default one (rule2 is the second rule's default name).
        (set, lines) = diagnose("rules:\n  - name: rule2\n    action: drop\n  - action: drop\n")
        #expect(set == nil)
        #expect(lines.contains { $0.hasPrefix("t.yaml:4:5: error: two rules are named 'rule2'") && $0.contains("line 2:11") }, "\(lines)")
        // Reported even when the clashing rule has another error.
        (set, lines) = diagnose("rules:\n  - name: x\n    action: drop\n  - name: x\n    action: dorp\n")
        #expect(lines.contains { $0.contains("two rules are named 'x'") } && lines.contains { $0.contains("unknown action 'dorp'") }, "\(lines)")
    }

    @Test("reversed ranges and out-of-range types get their own messages")
    func typeRanges() {
        var (set, lines) = diagnose("rules:\n  - match: {type: 40000-30000}\n    action: drop\n")
        #expect(set == nil)
        #expect(lines == ["t.yaml:2:19: error: range 40000-30000 is reversed: a range is LOW-HIGH, here 30000-40000"], "\(lines)")
        (set, lines) = diagnose("rules:\n  - match: {type: 70000}\n    action: drop\n")
        #expect(lines == ["t.yaml:2:19: error: type 70000 is out of range: message types are 0-65535 (two bytes)"], "\(lines)")
        (set, lines) = diagnose("rules:\n  - match: {type: [ping, 30000-70000]}\n    action: drop\n")
        #expect(lines.count == 1 && lines[0].contains("range 30000-70000 is out of range"), "\(lines)")
        (set, lines) = diagnose("rules:\n  - match: {type: -1}\n    action: drop\n")
        #expect(lines.count == 1 && lines[0].contains("type -1 is out of range"), "\(lines)")
        // Well-formed ranges and names still load.
        (set, lines) = diagnose("rules:\n  - match: {type: [30000-40000, ping, 65535]}\n    action: drop\n")
        #expect(set?.rules.first?.match.types == [30000...40000, 18...18, 65535...65535], "\(lines)")
    }

    @Test("directions: a2b and b2a need no shell quoting; a->b and b->a still work")
    func directions() throws {
        #expect(Direction(parsing: "a2b") == .aToB && Direction(parsing: "B2A") == .bToA)
        #expect(Direction(parsing: "a->b") == .aToB && Direction(parsing: " b->a ") == .bToA)
        #expect(Direction(parsing: "a") == nil && Direction(parsing: "a2a") == nil && Direction(parsing: "") == nil)
        let (set, lines) = diagnose("""
            rules:
              - match: {type: ping, dir: a2b}
                action: {inject: {hex: '8001', dir: b2a}}
              - match: {dir: 'b->a'}
                action: drop
              - match: {dir: sideways}
                action: drop
            """)
        #expect(set == nil)
        #expect(lines == ["t.yaml:6:18: error: dir must be a2b or b2a (also written 'a->b', 'b->a') or any"], "\(lines)")
        let (ok, _) = diagnose("rules:\n  - match: {type: ping, dir: a2b}\n    action: {inject: {hex: '8001', dir: b2a}}\n  - match: {dir: 'b->a'}\n    action: drop\n")
        let rules = try #require(ok).rules
        #expect(rules[0].match.direction == .aToB && rules[1].match.direction == .bToA)
        guard case .inject(let injection) = rules[0].action else { Issue.record("not an inject"); return }
        #expect(injection.direction == .bToA)
    }
}
