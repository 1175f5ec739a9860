import LNRecording
import LNRelay
import LNRules
import LNWire
import Testing

/// Transcripts of faults from a connection's first byte (`at: connect`) and of `delfault`
/// undoing shaping (issue #17), in the relay core.
@Suite("Relay core: faults at connect, shaping undone")
struct ConnectFaultPlaybookTests {
    static func rules(_ yaml: String) -> RuleSet {
        let (set, diagnostics) = RuleParser.parse(yaml: yaml, file: "test.yaml")
        #expect(set != nil, "\(diagnostics)")
        return set ?? RuleSet()
    }

    @Test("a slicer at connect toward a shapes a's socket when it is attached, before act two; its event opens the recording, with its own time")
    func slicerTowardA() {
        let p = Playbook(rules: "rules:\n  - {name: crumbs, match: {at: connect, dir: b2a}, action: {slicer: {size: 7, gap: 1}}}\n", records: true)
        let attached = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        #expect(attached == ["wake handshake +30000ms", "shape a slicer 7 B every 1000 us"], "\(attached)")
        p.advance(milliseconds: 100)
        var actions: [SessionAction<[UInt8]>] = []
        p.core.handle(.handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true), now: p.now, into: &actions)
        let events = actions.compactMap { action -> (RecordingEvent, UInt64)? in
            if case .recordEvent(let event, let at) = action { (event, at) } else { nil }
        }
        #expect(events.map(\.0.name) == ["session-start", "fault", "handshake"], "\(events)")
        let fault = events[1]
        #expect(fault.0.fields["at"] == .string("connect") && fault.0.fields["rule"] == .string("crumbs"))
        #expect(fault.0.fields["direction"] == .string("b->a") && fault.0.fields["fault"] == .string("slicer"))
        // When it took effect (at attach), not when the recording opened 100 ms later.
        #expect(fault.1 == Playbook.wallStart && events[2].1 == Playbook.wallStart + 100_000_000)
        // b gets nothing: the rule goes toward a.
        _ = p >> .attached(.b, remoteAddress: "127.0.0.1:9736")
        #expect(!(p >> .handshakeCompleted(.b, remoteNodeID: Playbook.nodeB, keyHeld: false)).contains { $0.hasPrefix("shape") })
    }

    @Test("toward b, a connect fault acts when the upstream channel is attached (before act one) and is recorded at once")
    func towardB() {
        let p = Playbook(rules: "rules:\n  - {name: b-side, match: {at: connect, dir: a2b}, action: [{bandwidth: 9000}, {slicer: {size: 5, variation: 2}}]}\n",
                         records: true)
        #expect(!(p >> .attached(.a, remoteAddress: "127.0.0.1:5000")).contains { $0.hasPrefix("shape") })
        _ = p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true)
        let lines = p >> .attached(.b, remoteAddress: "127.0.0.1:9736")
        #expect(lines == [
            "wake handshake +30000ms",
            "event fault at=connect detail=bandwidth 9000 B/s direction=a->b fault=bandwidth rule=b-side",
            "shape b bandwidth 9000 B/s",
            "event fault at=connect detail=slicer 5±2 B every 0 us direction=a->b fault=slicer rule=b-side",
            "shape b bandwidth 9000 B/s, slicer 5±2 B every 0 us",
        ], "\(lines)")
    }

    @Test("limit-data at connect: a byte budget for the driver, handshake included; spent, the session ends and says why")
    func limitDataAtConnect() {
        let p = Playbook(rules: "rules:\n  - {name: stub, match: {at: connect, dir: b2a}, action: {limit-data: 20}}\n",
                         records: true, recordFailedHandshakes: true)
        #expect(p >> .attached(.a, remoteAddress: "127.0.0.1:5000") == ["wake handshake +30000ms", "limit a 20 B"])
        let ended = p >> .byteLimitReached(.a)
        #expect(ended.contains("open recording"))
        #expect(ended.contains("event fault at=connect detail=limit-data 20 B direction=b->a fault=limit-data rule=stub"), "\(ended)")
        #expect(ended.contains("event close detail=fault limit-data at connect: 20 bytes toward a were written, handshake included reason=disconnected"), "\(ended)")
        #expect(ended.last == "close a")
    }

    @Test("reset at connect ends the connection with RST at once; timeout at connect reads nothing, then closes")
    func resetAndTimeoutAtConnect() {
        let p = Playbook(rules: "rules:\n  - {match: {at: connect, dir: b2a}, action: reset}\n")
        let lines = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        #expect(lines.last == "reset a", "\(lines)")
        #expect(p.core.closeReason?.detail == "fault reset at connect: closed with RST")
        #expect(p >> .closed(.a) == ["finished disconnected"])

        let q = Playbook(rules: "rules:\n  - {match: {at: connect}, action: {timeout: 500}}\n")
        #expect((q >> .attached(.a, remoteAddress: "127.0.0.1:5000")).contains("wake fault-timeout +500ms"))
        #expect(!q.core.mayRead(.a))
        q.advance(milliseconds: 500)
        #expect(q >> .timerFired(.faultTimeout) == ["close a"])
    }

    @Test("a shaping fault whose rule is no longer in force is undone, leaving what the other rules set; each removal is an event")
    func delfaultUndoesShaping() {
        let both = """
            rules:
              - {name: crumbs, match: {dir: b2a, nth: 1}, action: {slicer: {size: 5, gap: 3}}}
              - {name: thin, match: {dir: b2a, nth: 1}, action: {bandwidth: 1000}}
            """
        let p = Playbook.relaying(rules: both, records: true)
        let shaped = (p >> .received(Msg.custom, from: .b)).filter { $0.hasPrefix("shape") }
        #expect(shaped == ["shape a slicer 5 B every 3000 us", "shape a bandwidth 1000 B/s, slicer 5 B every 3000 us"], "\(shaped)")
        let withoutCrumbs = Self.rules("rules:\n  - {name: thin, match: {dir: b2a, nth: 1}, action: {bandwidth: 1000}}\n")
        let one = p >> .rulesChanged(withoutCrumbs, file: nil, sha256: nil)
        #expect(one.contains("event fault detail=removed direction=b->a fault=slicer rule=crumbs"), "\(one)")
        #expect(one.contains("shape a bandwidth 1000 B/s"))
        // The same rules again change nothing; none at all unshapes.
        #expect(!(p >> .rulesChanged(withoutCrumbs, file: nil, sha256: nil)).contains { $0.hasPrefix("shape") })
        let none = p >> .rulesChanged(nil, file: nil, sha256: nil)
        #expect(none.contains("event fault detail=removed direction=b->a fault=bandwidth rule=thin") && none.contains("shape a unshaped"), "\(none)")
    }

    @Test("a shaping rule that fires on every message keeps one entry: removing it undoes it once")
    func everyMessageShapingStaysBounded() {
        let p = Playbook.relaying(rules: "rules:\n  - {name: thin, match: {dir: b2a}, action: {bandwidth: 1000}}\n", records: true)
        for _ in 0..<100 { _ = p >> .received(Msg.custom, from: .b) }
        let none = p >> .rulesChanged(nil, file: nil, sha256: nil)
        #expect(none.filter { $0.contains("detail=removed") }.count == 1, "\(none)")
        #expect(none.contains("shape a unshaped"), "\(none)")
    }
}
