import LNRecording
import LNRelay
import LNRules
import LNWire
import Testing

private let initHex = Msg.initMessage.hex

@Suite("relay core: what a peer or client cannot make the proxy keep")
struct ReliabilityTranscripts {
    @Test("a connection that never completes act three opens no recording: one log line, and the core says it never authenticated")
    func failedHandshakeNotRecorded() {
        for ending in [SessionEvent<[UInt8]>.timerFired(.handshake),
                       .failed(CloseReason(side: .a, kind: .handshakeFailure, detail: "act one: bad version")),
                       .closed(.a)] {
            let p = Playbook(records: true, hidden: ["publish", "kick", "cancel", "reading", "wake"])
            _ = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
            let lines = p >> ending
            #expect(!lines.contains("open recording"), "\(ending): \(lines)")
            #expect(!lines.contains { $0.hasPrefix("event ") || $0.hasPrefix("record ") }, "\(ending): \(lines)")
            #expect(lines.filter { $0.hasPrefix("log ") }.count == 1, "\(ending): \(lines)")
            #expect(lines.first { $0.hasPrefix("log ") }?.contains("before its handshake completed (not recorded)") == true)
            #expect(!p.core.authenticated)
            _ = p >> .closed(.a)
            if case .finished = p.core.lifecycle {} else { Issue.record("\(ending): not finished: \(p.core.lifecycle)") }
        }
    }

    @Test("--record-failed-handshakes keeps the forensic recording of a failed handshake")
    func failedHandshakeRecordedOnRequest() {
        let p = Playbook(records: true, recordFailedHandshakes: true, hidden: ["log", "publish", "kick", "cancel", "reading", "wake"])
        _ = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        #expect(p >> .failed(CloseReason(side: .a, kind: .handshakeFailure, detail: "act one: bad version")) == [
            "open recording", "event session-start a_address=127.0.0.1:5000",
            "event close by=a detail=act one: bad version reason=handshake-failure", "close a",
        ])
    }

    @Test("an authenticated session that ends is still recorded (the refusal of --require-transparent too)")
    func authenticatedStillRecorded() {
        let p = Playbook(records: true, hidden: ["log", "publish", "kick", "cancel", "reading", "wake", "dial"])
        _ = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        #expect((p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true)).contains("open recording"))
        #expect(p.core.authenticated)
    }

    @Test("the held init is recorded as not delivered when the upstream dial fails")
    func heldInitNotDeliveredOnDialFailure() {
        let p = Playbook(records: true, hidden: ["log", "publish", "kick", "cancel", "reading", "wake", "dial"])
        _ = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        _ = p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true)
        // Held for b: nothing recorded yet, since whether it is delivered is not known.
        #expect(p >> .received(Msg.initMessage, from: .a) == [])
        #expect(p >> .upstreamUnreachable("127.0.0.1:9736: connection refused") == [
            "record a->b \(initHex) [not delivered: the session ended before the upstream was up | delivery: none]",
            "event close by=b detail=127.0.0.1:9736: connection refused reason=upstream-unreachable",
            "close a",
        ])
    }

    @Test("a b handshake that times out leaves the held messages not delivered too")
    func heldInitNotDeliveredOnBTimeout() {
        let p = Playbook(records: true, hidden: ["log", "publish", "kick", "cancel", "reading", "wake", "dial", "event", "close"])
        _ = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        _ = p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true)
        _ = p >> .received(Msg.initMessage, from: .a)
        _ = p >> .attached(.b, remoteAddress: nil)
        #expect(p >> .timerFired(.handshake) == [
            "record a->b \(initHex) [not delivered: the session ended before the upstream was up | delivery: none]",
        ])
    }

    @Test("held messages that reach b are recorded as they came, in order, before b's handshake, then delivered")
    func heldInitDelivered() {
        let p = Playbook(records: true, hidden: ["log", "publish", "kick", "cancel", "reading", "wake", "dial"])
        _ = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        _ = p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true)
        #expect(p >> .received(Msg.initMessage, from: .a) == [])
        #expect(p >> .received(Msg.ping, from: .a) == [])
        _ = p >> .attached(.b, remoteAddress: nil)
        #expect(p >> .handshakeCompleted(.b, remoteNodeID: Playbook.nodeB, keyHeld: false) == [
            "record a->b \(initHex)", "record a->b \(Msg.ping.hex)",
            "event handshake node_id=\(Playbook.nodeB) side=b",
            "deliver b \(initHex)", "deliver b \(Msg.ping.hex)", "flush b",
        ])
        #expect(p.core.recordedMessages == 2)
        // Afterwards the fast path records as before.
        #expect(p >> .received(Msg.ping, from: .a) == ["record a->b \(Msg.ping.hex)", "deliver b \(Msg.ping.hex)"])
    }

    @Test("control injections towards a side that is not writable, or whose queue is full, are refused, not buffered")
    func injectBackPressure() {
        let p = Playbook.relaying()
        #expect(p.core.mayInject(.aToB) && p.core.mayInject(.bToA))
        _ = p >> .writabilityChanged(.b, writable: false)
        #expect(!p.core.mayInject(.aToB))
        #expect(p.core.mayInject(.bToA))
        // Even if a driver fed it, the core takes nothing towards the unwritable side.
        #expect(p >> .inject(Msg.custom, .aToB, source: "inject") == [])
        _ = p >> .writabilityChanged(.b, writable: true)
        #expect(p >> .inject(Msg.custom, .aToB, source: "inject") == ["deliver b \(Msg.custom.hex)", "flush b"])

        // A queue over its byte bound (a delay holds it) refuses too.
        let q = Playbook.relaying(rules: "rules:\n  - {name: slow, match: {type: ping}, action: {delay: 1000}}\n", holdLimit: 10)
        _ = q >> .received(Msg.ping, from: .a)
        #expect(q.core.mayInject(.aToB))
        _ = q >> .received(Msg.custom, from: .a)
        _ = q >> .received(Msg.custom2, from: .a)
        #expect(!q.core.mayInject(.aToB))
        #expect(q.core.mayInject(.bToA))

        // Not relaying yet: no injection at all.
        let r = Playbook()
        _ = r >> .attached(.a, remoteAddress: nil)
        #expect(!r.core.mayInject(.aToB))
    }
}
