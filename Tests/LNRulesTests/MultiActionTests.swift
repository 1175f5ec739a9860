import LNWire
import Testing
@testable import LNRules

/// Several effects at one moment (issue #17, part 3) and the fault actions (part 1), at the engine.
@Suite("Several rules and action lists on one message; fault actions")
struct MultiActionTests: RuleFileTesting {
    let shutdown: [UInt8] = [0, 38] + [UInt8](repeating: 0x11, count: 32) + [0, 2, 0xab, 0xcd]
    let custom: [UInt8] = [0x80, 0x01, 0xca, 0xfe]

    func handover(_ bytes: [UInt8], _ direction: Direction = .bToA) -> MessageContext {
        MessageContext(direction: direction, bytes: bytes, phaseBefore: .channel, phaseAfter: .closing,
                       changes: [(.channel, .closing)])
    }

    @Test("two inject rules on one trigger, one each way, both inject, in file order")
    func twoInjectsOneTrigger() throws {
        var engine = RuleEngine(rules: try rules("""
            rules:
              - name: to-b
                match: {on: channel -> closing}
                action: {inject: {hex: "8001aa", dir: a2b, when: after}}
              - name: to-a
                match: {on: channel -> closing}
                action: {inject: {hex: "8003bb", dir: b2a, when: after}}
            """))
        let effects = engine.decide(handover(shutdown))
        #expect(effects.injectAfter == [
            InjectedMessage(message: [0x80, 0x01, 0xaa], direction: .aToB, note: effects.annotations[0]),
            InjectedMessage(message: [0x80, 0x03, 0xbb], direction: .bToA, note: effects.annotations[1]),
        ])
        #expect(effects.delivery == .original)
        #expect(effects.annotations == ["rule \"to-b\": injected custom a->b after this message",
                                        "rule \"to-a\": injected custom b->a after this message"])
        // The plan carries both, in that order, after the delivery.
        let plan = EffectPlan(observation: PhaseObservation(channel: nil, before: .channel, after: .closing, changes: []), effects: effects)
        #expect(plan.steps == [.deliver(.original, copies: 1), .inject(effects.injectAfter[0]), .inject(effects.injectAfter[1])])
    }

    @Test("a rule's list of actions all apply, in order")
    func actionList() throws {
        var engine = RuleEngine(rules: try rules("""
            rules:
              - name: both-ways
                match: {on: channel -> closing}
                action:
                  - {inject: {hex: "8001aa", dir: a->b}}
                  - {inject: {hex: "8003bb", dir: b->a, when: before}}
                  - {delay: 30}
                  - duplicate
                  - {mark: hand-over}
            """))
        let effects = engine.decide(handover(shutdown))
        #expect(effects.injectAfter.map(\.direction) == [.aToB])
        #expect(effects.injectBefore.map(\.direction) == [.bToA])
        #expect(effects.delayMilliseconds == 30 && effects.copies == 2)
        #expect(effects.annotations.count == 5 && effects.annotations.last == "rule \"both-ways\": hand-over")
    }

    @Test("the first deciding rule decides; later deciding actions are noted, not applied; inject and mark still add")
    func conflicts() throws {
        var engine = RuleEngine(rules: try rules("""
            rules:
              - name: first
                match: {custom: true}
                action: drop
              - name: only-fate
                match: {custom: true}
                action: {replace: {hex: "8005"}}
              - name: mixed
                match: {custom: true}
                action: [duplicate, {inject: {hex: "8007", dir: b2a}}]
            """))
        let effects = engine.decide(handover(custom, .aToB))
        #expect(effects.delivery == .none && effects.copies == 1)
        #expect(effects.injectAfter.map(\.message) == [[0x80, 0x07]])
        #expect(effects.annotations == [
            "rule \"first\": dropped",
            "rule \"mixed\": duplicate not applied (an earlier rule decided this message)",
            "rule \"mixed\": injected custom b->a after this message",
        ])
    }

    @Test("a rule's list that says two fates is an error; replace with duplicate is fine")
    func listConflictsRejected() {
        let bad = problems("rules:\n  - match: {custom: true}\n    action: [drop, duplicate]\n")
        #expect(bad.contains { $0.hasPrefix("t.yaml:3:20: error: 'duplicate' conflicts with 'drop'") }, "\(bad)")
        #expect(problems("rules:\n  - match: {custom: true}\n    action: [{replace: {hex: '8005'}}, duplicate]\n").isEmpty)
        #expect(problems("rules:\n  - match: {custom: true}\n    action: []\n").contains { $0.contains("at least one action") })
    }

    @Test("fault actions parse, and bad values say what is expected")
    func faultsParse() throws {
        let set = try rules("""
            rules:
              - match: {dir: a2b}
                action:
                  - {latency: {ms: 100, jitter: 20, distribution: normal}}
                  - {bandwidth: 1000000}
                  - {slicer: {size: 7, gap: 0.5}}
                  - reset
                  - {slow-close: 250}
                  - {timeout: 1000}
                  - {limit-data: 4096}
                  - {latency: 5}
            """)
        #expect(set.rules[0].actions.count == 8)
        guard case .latency(let l) = set.rules[0].actions[0] else { Issue.record("not latency"); return }
        #expect(l == Latency(milliseconds: 100, jitter: 20, distribution: .normal))
        let faults = set.rules[0].actions.compactMap { if case .fault(let f) = $0 { f } else { nil } }
        #expect(faults == [.bandwidth(bytesPerSecond: 1_000_000), .slicer(bytes: 7, gapMicroseconds: 500), .reset,
                           .slowClose(milliseconds: 250), .timeout(milliseconds: 1000), .limitData(bytes: 4096)])
        #expect(problems("rules:\n  - action: {bandwidth: 0}\n").contains { $0.contains("bandwidth is a number of bytes per second") })
        #expect(problems("rules:\n  - action: {slicer: {size: 7, gapp: 1}}\n").contains { $0.contains("did you mean gap") })
        #expect(problems("rules:\n  - action: {latency: {ms: 5, distribution: gauss}}\n").contains { $0.contains("distribution is uniform or normal") })
        #expect(problems("rules:\n  - action: {bandwith: 5}\n").contains { $0.contains("did you mean bandwidth") })
    }

    @Test("faults add to the effects and never decide: a later rule still decides the message")
    func faultsAdd() throws {
        var engine = RuleEngine(rules: try rules("""
            rules:
              - name: shape
                match: {dir: b2a}
                action: {bandwidth: 5000}
              - name: cut
                match: {custom: true, dir: b2a}
                action: drop
            """))
        let effects = engine.decide(handover(custom))
        #expect(effects.faults == [.bandwidth(bytesPerSecond: 5000)] && effects.delivery == .none)
        let plan = EffectPlan(observation: PhaseObservation(channel: nil, before: .channel, after: .channel, changes: []), effects: effects)
        #expect(plan.steps == [.deliver(.none, copies: 0), .fault(.bandwidth(bytesPerSecond: 5000), rule: "shape")])
    }

    @Test("latency draws are seeded, spread as asked, and never negative", arguments: [Latency.Distribution.uniform, .normal])
    func latencyDraws(distribution: Latency.Distribution) throws {
        func run(seed: Int) throws -> [Int] {
            var engine = RuleEngine(rules: try rules(
                "seed: \(seed)\nrules:\n  - match: {custom: true}\n    action: {latency: {ms: 100, jitter: 20, distribution: \(distribution.rawValue)}}\n"))
            return (0..<2000).map { _ in engine.decide(handover(custom)).delayMilliseconds }
        }
        let a = try run(seed: 3), b = try run(seed: 3), c = try run(seed: 4)
        #expect(a == b && a != c)
        let mean = Double(a.reduce(0, +)) / Double(a.count)
        let sd = (a.map { (Double($0) - mean) * (Double($0) - mean) }.reduce(0, +) / Double(a.count)).squareRoot()
        #expect(abs(mean - 100) < 2)
        switch distribution {
        case .uniform:
            // Uniform on ±20: within bounds, stddev 20/sqrt(3) = 11.5.
            #expect(a.allSatisfy { $0 >= 80 && $0 <= 120 })
            #expect(abs(sd - 11.5) < 1)
        case .normal:
            #expect(abs(sd - 20) < 1.5)
            #expect(a.contains { $0 < 80 } && a.contains { $0 > 120 })
        }
        var zero = RuleEngine(rules: try rules("rules:\n  - action: {latency: {ms: 1, jitter: 50, distribution: normal}}\n"))
        #expect((0..<500).allSatisfy { _ in zero.decide(handover(custom)).delayMilliseconds >= 0 })
    }
}
