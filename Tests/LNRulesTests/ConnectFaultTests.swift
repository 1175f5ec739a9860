import LNWire
import Testing
@testable import LNRules

/// `at: connect` rules (faults from a connection's first byte) and the slicer's `variation`
/// (issue #17), in the parser and the engine.
@Suite("Faults at connect; slicer variation")
struct ConnectFaultTests: RuleFileTesting {
    @Test("an `at: connect` rule gives its faults to the side its `dir` goes toward (both without `dir`), in file order")
    func connectFaultsBySide() throws {
        let set = try rules("""
            rules:
              - name: to-a
                match: {at: connect, dir: b2a}
                action: [{slicer: {size: 7, gap: 1}}, {limit-data: 100}]
              - name: both
                match: {at: connect}
                action: {bandwidth: 5000}
              - name: per-message
                match: {dir: b2a}
                action: {bandwidth: 1}
            """)
        #expect(set.rules[0].match.atConnect && !set.rules[2].match.atConnect)
        let towardA = set.connectFaults(.bToA)
        #expect(towardA.map(\.rule) == ["to-a", "to-a", "both"])
        #expect(towardA.map(\.fault) == [.slicer(bytes: 7, gapMicroseconds: 1000), .limitData(bytes: 100), .bandwidth(bytesPerSecond: 5000)])
        #expect(set.connectFaults(.aToB).map(\.rule) == ["both"])
    }

    @Test("a connect rule never matches a message, and counts as fired for `after:`")
    func connectRulesAreNotMessageRules() throws {
        var engine = RuleEngine(rules: try rules("""
            rules:
              - {name: c, match: {at: connect}, action: reset}
              - {name: later, match: {after: c, type: ping}, action: {mark: seen}}
            """))
        let ping: [UInt8] = [0x00, 0x12, 0x00, 0x02, 0x00, 0x00]
        let effects = engine.decide(MessageContext(direction: .aToB, bytes: ping, phaseBefore: .initializing, phaseAfter: .initializing))
        #expect(effects.faults.isEmpty)
        #expect(effects.annotations == ["rule \"later\": seen"])
    }

    @Test("`at: connect` takes `dir` alone and faults alone; each mistake is reported where it is, with what to do")
    func meaninglessCombinationsRejected() {
        let typed = problems("rules:\n  - match: {at: connect, type: ping}\n    action: reset\n")
        #expect(typed.contains { $0.hasPrefix("t.yaml:2:26: error: `at: connect` takes no `type`") && $0.contains("Remove `at: connect`") }, "\(typed)")
        let nth = problems("rules:\n  - match: {nth: 2, at: connect}\n    action: reset\n")
        #expect(nth.contains { $0.hasPrefix("t.yaml:2:13: error: `at: connect` takes no `nth`") }, "\(nth)")
        let drop = problems("rules:\n  - match: {at: connect}\n    action: drop\n")
        #expect(drop == ["t.yaml:3:13: error: 'drop' acts on a message, and an `at: connect` rule acts before any: its actions are faults "
                         + "(bandwidth, slicer, reset, slow-close, timeout, limit-data); remove `at: connect` to drop matching messages"], "\(drop)")
        let inList = problems("rules:\n  - match: {at: connect}\n    action: [reset, {inject: {hex: '8001'}}]\n")
        #expect(inList.contains { $0.hasPrefix("t.yaml:3:21: error: 'inject' acts on a message") }, "\(inList)")
        let latency = problems("rules:\n  - match: {at: connect}\n    action: {latency: 5}\n")
        #expect(latency.contains { $0.hasPrefix("t.yaml:3:13: error: latency delays messages") }, "\(latency)")
        let when = problems("rules:\n  - match: {at: start}\n    action: reset\n")
        #expect(when.contains { $0.hasPrefix("t.yaml:2:17: error: at must be connect") }, "\(when)")
        #expect(problems("rules:\n  - match: {at: connect, dir: 'a->b'}\n    action: [{timeout: 0}, {slow-close: 5}, reset]\n").isEmpty)
    }

    @Test("slicer variation: parsed, described, and refused unless below size")
    func variation() throws {
        let set = try rules("rules:\n  - action: {slicer: {size: 7, variation: 3, gap: 1}}\n")
        guard case .fault(let fault) = set.rules[0].action else { Issue.record("not a fault"); return }
        #expect(fault == .slicer(bytes: 7, gapMicroseconds: 1000, variation: 3))
        #expect(fault.description == "slicer 7±3 B every 1000 us")
        #expect(Fault.slicer(bytes: 7, gapMicroseconds: 1000).description == "slicer 7 B every 1000 us")
        let equal = problems("rules:\n  - action: {slicer: {size: 7, variation: 7}}\n")
        #expect(equal == ["t.yaml:2:43: error: slicer variation 7 must be less than size 7: each segment is size ± variation bytes, at least 1 (here at most 6)"], "\(equal)")
        #expect(problems("rules:\n  - action: {slicer: {size: 7, variation: -1}}\n").contains { $0.contains("slicer variation is a number of bytes, 0 or more") })
        #expect(problems("rules:\n  - action: {slicer: {size: 7, variaton: 1}}\n").contains { $0.contains("did you mean variation") })
    }

    @Test("shaping adds up: the latest bandwidth and the latest slicer, in order")
    func shapingAddsUp() {
        let shaping = Shaping([.slicer(bytes: 3, gapMicroseconds: 0), .bandwidth(bytesPerSecond: 10), .reset,
                               .slicer(bytes: 7, gapMicroseconds: 5, variation: 2)], seed: 4)
        #expect(shaping == Shaping(bytesPerSecond: 10, slicer: .slicer(bytes: 7, gapMicroseconds: 5, variation: 2), seed: 4))
        #expect(shaping.description == "bandwidth 10 B/s, slicer 7±2 B every 5 us")
        #expect(Shaping([], seed: 0).isNone && Shaping([], seed: 0).description == "unshaped")
    }
}
