import LNRelay
import LNRules
import LNWire
import Testing

/// Transcripts of issue #17's parts 3 (several effects at one moment, the `idle` phase) and 1
/// (faults) in the relay core.
@Suite("Relay core: several effects at one moment, faults")
struct FaultPlaybookTests {
    static func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }
    static let id = [UInt8](repeating: 0x42, count: 32)
    static let initMessage: [UInt8] = [0x00, 0x10, 0x00, 0x00, 0x00, 0x00]
    static let reestablish = [0x00, 0x88] + id + be64(5) + be64(4) + [UInt8](repeating: 0x53, count: 32) + [0x02] + [UInt8](repeating: 9, count: 32)
    static func shutdown(_ byte: UInt8) -> [UInt8] { [0x00, 0x26] + id + [0x00, 0x16, 0x00, 0x14] + [UInt8](repeating: byte, count: 20) }
    static func closingSigned(fee: UInt64) -> [UInt8] { [0x00, 0x27] + id + be64(fee) + [UInt8](repeating: 0x5a, count: 64) }

    /// Brings the relayed connection to a channel in `channel` (both inits, a reestablish each way).
    static func channelUp(_ p: Playbook) {
        _ = p >> .received(initMessage, from: .a)
        _ = p >> .received(initMessage, from: .b)
        _ = p >> .received(reestablish, from: .a)
        _ = p >> .received(reestablish, from: .b)
        #expect(p.core.stage.phases.connectionPhase == .channel)
    }

    @Test("two inject rules on `on: channel -> closing`, one each way, both deliver; the recording shows each; the close leaves the connection idle")
    func handoverProbedFromBothSides() {
        let p = Playbook.relaying(rules: """
            rules:
              - {name: to-b, match: {on: channel -> closing}, action: {inject: {hex: 8001aa, dir: a2b}}}
              - {name: to-a, match: {on: channel -> closing}, action: {inject: {hex: 8003bb, dir: b2a}}}
              - {name: after-close, match: {phase: idle, custom: true}, action: {mark: seen idle}}
            """, records: true)
        Self.channelUp(p)
        _ = p >> .received(Self.shutdown(0xa1), from: .a)
        let lines = p >> .received(Self.shutdown(0xb1), from: .b)
        let theirs = Self.shutdown(0xb1).hex
        #expect(lines.contains("record b->a \(theirs) [phase 4242..4242: channel -> closing | phase connection: channel -> closing | rule \"to-b\": injected custom a->b after this message | rule \"to-a\": injected custom b->a after this message]"), "\(lines)")
        #expect(lines.contains("record a->b 8001aa [injected by lnrr | delivery: injected | rule \"to-b\": injected custom a->b after this message]"))
        #expect(lines.contains("record b->a 8003bb [injected by lnrr | delivery: injected | rule \"to-a\": injected custom b->a after this message]"))
        // Both reach their receivers: b's shutdown then lnrr's message to a; lnrr's message to b.
        let deliveries = lines.filter { $0.hasPrefix("deliver") }
        #expect(deliveries == ["deliver a \(theirs)", "deliver a 8003bb", "deliver b 8001aa"])
        #expect(lines.contains("flush b"))

        // The negotiation ends; the connection is idle, not `opening`, and rules can say so.
        _ = p >> .received(Self.closingSigned(fee: 900), from: .a)
        let agreed = p >> .received(Self.closingSigned(fee: 900), from: .b)
        #expect(agreed.contains { $0.contains("phase connection: closing -> idle") }, "\(agreed)")
        #expect(p.core.stage.phases.connectionPhase == .idle)
        #expect(p >> .received(Msg.custom, from: .a) == ["record a->b \(Msg.custom.hex) [rule \"after-close\": seen idle]", "deliver b \(Msg.custom.hex)"])
    }

    @Test("limit-data: frames go while they fit, then the connection closes; the fault is an event")
    func limitData() {
        // A 4-byte custom message is a 38-byte frame: 80 bytes after the first fit two more.
        let p = Playbook.relaying(rules: "rules:\n  - {name: cap, match: {custom: true, nth: 1}, action: {limit-data: 80}}\n", records: true)
        let first = p >> .received(Msg.custom, from: .a)
        #expect(first.contains("event fault detail=limit-data 80 B direction=a->b fault=limit-data rule=cap"), "\(first)")
        #expect(first.contains("deliver b \(Msg.custom.hex)"))
        #expect((p >> .received(Msg.custom, from: .a)).contains("deliver b \(Msg.custom.hex)"))
        #expect((p >> .received(Msg.custom, from: .a)).contains("deliver b \(Msg.custom.hex)"))
        let over = p >> .received(Msg.custom, from: .a)
        #expect(!over.contains { $0.hasPrefix("deliver") })
        #expect(over.contains("close a") && over.contains("close b"), "\(over)")
        // The other direction is not limited.
        let q = Playbook.relaying(rules: "rules:\n  - {match: {custom: true, nth: 1, dir: a2b}, action: {limit-data: 1}}\n")
        _ = q >> .received(Msg.custom, from: .a)
        #expect(q >> .received(Msg.custom, from: .b) == ["deliver a \(Msg.custom.hex)"])
    }

    @Test("reset: both sockets close with RST")
    func reset() {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {type: ping}, action: reset}\n", records: true)
        let lines = p >> .received(Msg.ping, from: .a)
        #expect(lines.contains("deliver b \(Msg.ping.hex)"))
        #expect(lines.contains("event fault detail=reset direction=a->b fault=reset rule=rule1"))
        #expect(lines.suffix(2) == ["reset a", "reset b"], "\(lines)")
        #expect(!lines.contains("close a"))
    }

    @Test("timeout: nothing more is relayed either way, then the sockets close")
    func timeout() {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {type: ping}, action: {timeout: 500}}\n")
        let lines = p >> .received(Msg.ping, from: .a)
        #expect(lines.contains("wake fault-timeout +500ms"), "\(lines)")
        #expect(!(p >> .received(Msg.custom, from: .b)).contains { $0.hasPrefix("deliver") })
        #expect(!p.core.mayRead(.a) && !p.core.mayRead(.b))
        p.advance(milliseconds: 500)
        #expect(p >> .timerFired(.faultTimeout) == ["close a", "close b"])
    }

    @Test("slow-close: when the session ends the other socket closes later")
    func slowClose() {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {type: ping}, action: {slow-close: 300}}\n")
        _ = p >> .received(Msg.ping, from: .a)
        let ended = p >> .closed(.b)
        #expect(!ended.contains("close a") && ended.contains("wake slow-close +300ms"), "\(ended)")
        p.advance(milliseconds: 300)
        #expect(p >> .timerFired(.slowClose) == ["close a"])
        #expect(p >> .closed(.a) == ["finished eof"])
    }

    @Test("bandwidth and slicer ask the driver to shape the receiver's socket once the message is through")
    func shaping() {
        let p = Playbook.relaying(rules: """
            rules:
              - {match: {dir: b2a, nth: 1}, action: [{bandwidth: 1000000}, {slicer: {size: 7, gap: 2}}]}
            """)
        #expect(p >> .received(Msg.custom, from: .b) == [
            "deliver a \(Msg.custom.hex)", "shape a bandwidth 1000000 B/s", "shape a bandwidth 1000000 B/s, slicer 7 B every 2000 us",
        ])
    }

    @Test("latency keeps the order of a direction: a message never overtakes the one before it")
    func latencyOrder() {
        let p = Playbook.relaying(rules: "seed: 9\nrules:\n  - {match: {custom: true}, action: {latency: {ms: 50, jitter: 40}}}\n")
        var delivered: [String] = []
        for n in 0..<20 {
            let m: [UInt8] = [0x80, 0x01, UInt8(n)]
            delivered += (p >> .received(m, from: .a)).filter { $0.hasPrefix("deliver") }
            p.advance(milliseconds: 5)
        }
        for _ in 0..<40 {
            p.advance(milliseconds: 5)
            delivered += (p >> .timerFired(.release(.aToB))).filter { $0.hasPrefix("deliver") }
        }
        #expect(delivered == (0..<20).map { "deliver b 8001\(HexString.encode([UInt8($0)]))" })
    }
}
