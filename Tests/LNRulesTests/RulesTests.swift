import LNWire
import Testing
@testable import LNRules

@Suite("Rule files and the rule engine")
struct RulesTests {
    func rules(_ yaml: String) throws -> RuleSet {
        let (set, diagnostics) = RuleParser.parse(yaml: yaml, file: "t.yaml")
        guard let set else { throw RuleTestError(diagnostics.map(\.description).joined(separator: "\n")) }
        return set
    }

    struct RuleTestError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    let ping: [UInt8] = [0, 18, 0, 4, 0, 0]
    let custom: [UInt8] = [0x80, 0x01, 0xca, 0xfe]
    let shutdown: [UInt8] = [0, 38] + [UInt8](repeating: 0x11, count: 32) + [0, 2, 0xab, 0xcd]

    func context(_ bytes: [UInt8], _ direction: Direction = .aToB, before: ChannelPhase = .channel, after: ChannelPhase? = nil) -> MessageContext {
        let after = after ?? before
        return MessageContext(direction: direction, bytes: bytes, phaseBefore: before, phaseAfter: after,
                              changes: before == after ? [] : [(before, after)], nodeA: "02" + String(repeating: "aa", count: 32),
                              nodeB: "03" + String(repeating: "bb", count: 32))
    }

    @Test("diagnostics carry exact positions and suggestions")
    func diagnostics() {
        let yaml = """
            rules:
              - name: kill
                match: {type: comitment_signed}
                action: drop
              - match: {phase: chanel}
                action: {delay: 10}
              - match: {type: ping, fields: {num_pong_bytez: 3}}
                action: {inject: {hex: 80zz}}
              - match: {typo: 1}
                action: dorp
            """
        let (set, d) = RuleParser.parse(yaml: yaml, file: "t.yaml")
        #expect(set == nil)
        let lines = d.map(\.description)
        #expect(lines.contains("t.yaml:3:19: error: unknown message type 'comitment_signed' (did you mean commitment_signed?)"))
        #expect(lines.contains { $0.hasPrefix("t.yaml:5:20: error: 'chanel' is not a phase") && $0.contains("did you mean channel") })
        #expect(lines.contains { $0.hasPrefix("t.yaml:7:34: error:") && $0.contains("num_pong_bytes") })
        #expect(lines.contains { $0.hasPrefix("t.yaml:8:28: error: hex must be") })
        #expect(lines.contains { $0.hasPrefix("t.yaml:9:13: error: unknown condition 'typo'") && $0.contains("did you mean type") })
        #expect(lines.contains { $0.hasPrefix("t.yaml:10:13: error: unknown action 'dorp'") && $0.contains("did you mean drop") })
    }

    @Test("warnings for risky injections, and files with only warnings load")
    func warnings() throws {
        let (set, d) = RuleParser.parse(yaml: "rules:\n  - match: {type: ping}\n    action: {inject: {hex: '0064'}}\n  - match: {custom: true}\n    action: {inject: {name: ping, fields: {num_pong_bytes: 1}}}\n", file: "w.yaml")
        #expect(set != nil)
        #expect(d.count == 2 && d.allSatisfy { $0.severity == .warning })
        #expect(d[0].message.contains("fail the connection") && d[1].message.contains("real protocol"))
    }

    @Test("matchers: direction, type by name/number/range, custom, parity, phase, on, node, payload, fields")
    func matchers() throws {
        func fires(_ match: String, _ c: MessageContext) throws -> Bool {
            var engine = RuleEngine(rules: try rules("rules:\n  - match: \(match)\n    action: drop\n"))
            return engine.decide(c).delivery == .none
        }
        #expect(try fires("{dir: a->b}", context(ping)))
        #expect(try !fires("{dir: b->a}", context(ping)))
        #expect(try fires("{type: ping}", context(ping)) && fires("{type: WIRE_PING}", context(ping)) && fires("{type: 18}", context(ping)))
        #expect(try fires("{type: '10-20'}", context(ping)) && !fires("{type: '20-30'}", context(ping)))
        #expect(try fires("{type: [pong, ping]}", context(ping)))
        #expect(try fires("{custom: true}", context(custom)) && !fires("{custom: true}", context(ping)))
        #expect(try fires("{parity: odd}", context(custom)) && !fires("{parity: odd}", context(ping)) && fires("{parity: even}", context(ping)))
        #expect(try fires("{phase: channel}", context(ping)) && !fires("{phase: opening}", context(ping)))
        #expect(try fires("{on: 'channel -> closing'}", context(shutdown, before: .channel, after: .closing)))
        #expect(try !fires("{on: 'channel -> closing'}", context(shutdown)))
        #expect(try fires("{node: {a: '02\(String(repeating: "aa", count: 32))'}}", context(ping)))
        #expect(try !fires("{node: {b: '02\(String(repeating: "aa", count: 32))'}}", context(ping)))
        #expect(try fires("{payload_prefix: cafe}", context(custom)) && !fires("{payload_prefix: beef}", context(custom)))
        #expect(try fires("{payload_regex: '^ca.e$'}", context(custom)))
        #expect(try fires("{type: shutdown, fields: {channel_id: '\(String(repeating: "11", count: 32))', scriptpubkey: abcd}}", context(shutdown)))
        #expect(try !fires("{type: shutdown, fields: {scriptpubkey: abce}}", context(shutdown)))
    }

    @Test("occurrence: nth, every, count, after")
    func occurrence() throws {
        func firing(_ yaml: String, _ messages: [[UInt8]]) throws -> [Int] {
            var engine = RuleEngine(rules: try rules(yaml))
            return messages.enumerated().compactMap { i, m in engine.decide(context(m)).delivery == .none ? i : nil }
        }
        let pings = Array(repeating: ping, count: 10)
        #expect(try firing("rules:\n  - match: {type: ping, nth: 3}\n    action: drop\n", pings) == [2])
        #expect(try firing("rules:\n  - match: {type: ping, every: 4}\n    action: drop\n", pings) == [3, 7])
        #expect(try firing("rules:\n  - match: {type: ping, count: 2}\n    action: drop\n", pings) == [0, 1])
        // `after`: counting starts once the other rule fired; marks do not stop evaluation.
        let yaml = "rules:\n  - name: first\n    match: {custom: true}\n    action: {mark: seen}\n  - match: {type: ping, after: first, nth: 2}\n    action: drop\n"
        #expect(try firing(yaml, [ping, ping, custom, ping, ping, ping]) == [4])
    }

    @Test("actions: delay, duplicate, inject before/after and the other way, replace whole and by fields, disconnect, mark")
    func actions() throws {
        var engine = RuleEngine(rules: try rules("""
            rules:
              - match: {type: ping}
                action: {delay: 25}
              - match: {custom: true, nth: 1}
                action: duplicate
              - match: {custom: true, nth: 2}
                action: {inject: {hex: 8003aa, dir: b->a, when: before}}
              - match: {custom: true, nth: 3}
                action: {inject: {name: ping, fields: {num_pong_bytes: 2}}}
              - match: {custom: true, nth: 4}
                action: {replace: {hex: 80050102}}
              - match: {type: shutdown}
                action: {replace: {fields: {scriptpubkey: 0014deadbeef}}}
              - match: {type: pong}
                action: {disconnect: '-'}
            """))
        #expect(engine.decide(context(ping)).delayMilliseconds == 25)
        #expect(engine.decide(context(custom)).copies == 2)
        let injectBefore = engine.decide(context(custom))
        #expect(injectBefore.injectBefore.count == 1 && injectBefore.injectBefore[0].direction == .bToA && injectBefore.delivery == .original)
        let injectAfter = engine.decide(context(custom))
        #expect(injectAfter.injectAfter.first?.message == [0, 18, 0, 2, 0, 0] && injectAfter.injectAfter.first?.direction == .aToB)
        #expect(engine.decide(context(custom)).replacement == [0x80, 0x05, 0x01, 0x02])
        let replaced = engine.decide(context(shutdown))
        #expect(replaced.replacement == [0, 38] + [UInt8](repeating: 0x11, count: 32) + [0, 6, 0x00, 0x14, 0xde, 0xad, 0xbe, 0xef])
        let cut = engine.decide(context([0, 19, 0, 0]))
        #expect(cut.disconnect == .before && cut.delivery == .none)
        #expect(cut.annotations.first?.contains("disconnect before (-)") == true)
    }

    @Test("probability with a seed: the same seed gives the same run, another seed another")
    func probability() throws {
        func run(seed: Int) throws -> [Bool] {
            var engine = RuleEngine(rules: try rules("seed: \(seed)\nrules:\n  - match: {type: ping, probability: 0.3}\n    action: drop\n"))
            return (0..<1000).map { _ in engine.decide(context(ping)).delivery == .none }
        }
        let a = try run(seed: 1), b = try run(seed: 1), c = try run(seed: 2)
        #expect(a == b && a != c)
        let rate = Double(a.filter { $0 }.count) / 1000
        #expect(rate > 0.25 && rate < 0.35)
    }

    @Test("a message no rule mentions is a plain forward")
    func fastPath() throws {
        var engine = RuleEngine(rules: try rules("rules:\n  - match: {type: ping}\n    action: drop\n"))
        #expect(!engine.mayApply(to: 19))
        #expect(engine.decide(context([0, 19, 0, 0])).isNone)
    }

    @Test("dev-disconnect files translate into rules that fire once each, in order")
    func devDisconnect() throws {
        let yaml = try DevDisconnect.translate("-WIRE_PING*2\n# comment\n+WIRE_PONG\n", file: "dd", asNode: "a")
        #expect(yaml.isEmpty == false)
        #expect(throws: DevDisconnect.LineError.self) { try DevDisconnect.translate("-WIRE_PING\n?WIRE_PONG\n", file: "dd", asNode: "a") }
        do {
            _ = try DevDisconnect.translate("-WIRE_PING\n-WIRE_PIGN\n", file: "dd", asNode: "a")
        } catch let error as DevDisconnect.LineError {
            #expect(error.line == 2 && error.message.contains("WIRE_PING"))
        }
        let good = try DevDisconnect.translate("-WIRE_PING*2\n<WIRE_PONG\n$WIRE_SHUTDOWN\n", file: "dd", asNode: "a")
        var engine = RuleEngine(rules: try rules(good))
        let pong: [UInt8] = [0, 19, 0, 0]
        // Line 1 fires on the second a->b ping; line 2 then on the first b->a pong; line 3 then on a shutdown.
        #expect(engine.decide(context(ping)).disconnect == nil)
        #expect(engine.decide(context(pong, .bToA)).disconnect == nil)  // not active yet
        #expect(engine.decide(context(ping)).disconnect == .before)
        #expect(engine.decide(context(ping)).disconnect == nil)  // fired once
        #expect(engine.decide(context(pong, .aToB)).disconnect == nil)  // wrong direction for `<`
        #expect(engine.decide(context(pong, .bToA)).disconnect == .afterReceive)
        #expect(engine.decide(context(shutdown)).disconnect == .drop)
        // As node b, the directions swap.
        let asB = try DevDisconnect.translate("-WIRE_PING\n", file: "dd", asNode: "b")
        var engineB = RuleEngine(rules: try rules(asB))
        #expect(engineB.decide(context(ping, .aToB)).disconnect == nil)
        #expect(engineB.decide(context(ping, .bToA)).disconnect == .before)
    }
}
