import LNRecording
import LNRelay
import LNRules
import LNWire
import Testing

private let ping = Msg.ping.hex, pong = Msg.pong.hex, custom = Msg.custom.hex, custom2 = Msg.custom2.hex

@Suite("relay core: handshakes, plain relaying and ordering")
struct RelayingTranscripts {
    @Test("a's handshake dials upstream; a's messages wait for b, in order, then go at once")
    func upstreamHold() {
        let p = Playbook()
        #expect(p >> .attached(.a, remoteAddress: "127.0.0.1:5000") == ["wake handshake +30000ms"])
        #expect(p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true) == ["dial as a"])
        #expect(p.core.lifecycle == .connectingB)
        #expect(p >> .received(Msg.ping, from: .a) == [])
        #expect(p >> .received(Msg.custom, from: .a) == [])
        #expect(p >> .readComplete(.a) == [])
        #expect(p >> .attached(.b, remoteAddress: nil) == ["wake handshake +30000ms"])
        #expect(p >> .handshakeCompleted(.b, remoteNodeID: Playbook.nodeB, keyHeld: false)
            == ["deliver b \(ping)", "deliver b \(custom)", "flush b"])
        #expect(p.core.lifecycle == .relaying)
    }

    @Test("a dialer whose key is not held is relayed as the proxy, or refused with --require-transparent")
    func transparency() {
        let p = Playbook()
        _ = p >> .attached(.a, remoteAddress: nil)
        #expect(p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: false) == ["dial as proxy"])
        let strict = Playbook(records: true, requireTransparent: true)
        _ = strict >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        #expect(strict >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: false) == [
            "open recording", "event session-start a_address=127.0.0.1:5000",
            "event handshake node_id=\(Playbook.nodeA) side=a",
            "event close by=a detail=no key for a (\(Playbook.nodeA)) in the keyring and --require-transparent is set reason=refused",
            "close a",
        ])
    }

    @Test("relaying: each message is delivered to the other side at once; a read's end flushes")
    func plain() {
        let p = Playbook.relaying()
        #expect(p >> .received(Msg.ping, from: .a) == ["deliver b \(ping)"])
        #expect(p >> .received(Msg.pong, from: .b) == ["deliver a \(pong)"])
        #expect(p >> .readComplete(.b) == ["flush a"])
        #expect(p.core.messagesAToB == 1 && p.core.messagesBToA == 1)
    }

    @Test("recording: messages are recorded with their phase changes, batched, and kicked once per read")
    func recording() {
        let p = Playbook.relaying(records: true, hidden: ["log", "publish", "cancel", "reading"])
        #expect(p >> .received(Msg.initMessage, from: .a) == ["record a->b \(Msg.initMessage.hex)", "deliver b \(Msg.initMessage.hex)"])
        #expect(p >> .received(Msg.initMessage, from: .b)
            == ["record b->a \(Msg.initMessage.hex) [phase connection: init -> opening]", "deliver a \(Msg.initMessage.hex)"])
        #expect(p >> .readComplete(.b) == ["kick", "flush a"])
    }
}

@Suite("relay core: every rule action")
struct RuleTranscripts {
    @Test("drop: not delivered, recorded as not delivered")
    func drop() {
        let p = Playbook.relaying(rules: "rules:\n  - {name: d, match: {type: ping}, action: drop}\n", records: true)
        #expect(p >> .received(Msg.ping, from: .a) == ["record a->b \(ping) [rule \"d\": dropped | delivery: none]"])
        #expect(p >> .received(Msg.pong, from: .a) == ["record a->b \(pong)", "deliver b \(pong)"])
    }

    @Test("delay: the message and everything behind it in its direction wait, in order; the other direction does not")
    func delay() {
        let p = Playbook.relaying(rules: "rules:\n  - {name: slow, match: {type: ping}, action: {delay: 50}}\n")
        #expect(p >> .received(Msg.ping, from: .a) == ["wake release a->b +50ms"])
        p.advance(milliseconds: 10)
        #expect(p >> .received(Msg.custom, from: .a) == ["wake release a->b +40ms"])
        #expect(p >> .received(Msg.pong, from: .b) == ["deliver a \(pong)"])
        p.advance(milliseconds: 40)
        #expect(p >> .timerFired(.release(.aToB)) == ["deliver b \(ping)", "deliver b \(custom)", "flush b"])
        #expect(p >> .received(Msg.custom2, from: .a) == ["deliver b \(custom2)"])
    }

    @Test("a second delay behind the first waits for its own deadline")
    func delays() {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {custom: true}, action: {delay: 50}}\n")
        _ = p >> .received(Msg.custom, from: .a)
        p.advance(milliseconds: 30)
        _ = p >> .received(Msg.custom2, from: .a)
        p.advance(milliseconds: 20)
        #expect(p >> .timerFired(.release(.aToB)) == ["deliver b \(custom)", "wake release a->b +30ms", "flush b"])
        p.advance(milliseconds: 30)
        #expect(p >> .timerFired(.release(.aToB)) == ["deliver b \(custom2)", "flush b"])
    }

    @Test("inject before and after, either way; injections are recorded as lnrr's own, before/after the message")
    func inject() {
        let p = Playbook.relaying(rules: """
            rules:
              - {name: pre, match: {custom: true, nth: 1}, action: {inject: {hex: 8003beef, when: before}}}
              - {name: post, match: {custom: true, nth: 2}, action: {inject: {hex: 8003beef, dir: b->a, when: after}}}
            """, records: true)
        #expect(p >> .received(Msg.custom, from: .a) == [
            "record a->b \(custom2) [injected by lnrr | delivery: injected | rule \"pre\": injected custom a->b before this message]",
            "record a->b \(custom) [rule \"pre\": injected custom a->b before this message]",
            "deliver b \(custom2)", "deliver b \(custom)",
        ])
        #expect(p >> .received(Msg.custom, from: .a) == [
            "record a->b \(custom) [rule \"post\": injected custom b->a after this message]",
            "record b->a \(custom2) [injected by lnrr | delivery: injected | rule \"post\": injected custom b->a after this message]",
            "deliver b \(custom)", "deliver a \(custom2)", "flush a",
        ])
    }

    @Test("replace: the replacement is delivered; the original is recorded as replaced, then the replacement")
    func replace() {
        let p = Playbook.relaying(rules: "rules:\n  - {name: r, match: {type: ping}, action: {replace: {hex: \"00130000\"}}}\n", records: true)
        #expect(p >> .received(Msg.ping, from: .a) == [
            "record a->b \(ping) [rule \"r\": replaced | delivery: replaced]",
            "record a->b \(pong) [delivery: replacement | replacement for #0]",
            "deliver b \(pong)",
        ])
    }

    @Test("duplicate: delivered twice, recorded once as delivered twice")
    func duplicate() {
        let p = Playbook.relaying(rules: "rules:\n  - {name: two, match: {type: ping}, action: duplicate}\n", records: true)
        #expect(p >> .received(Msg.ping, from: .a) == [
            "record a->b \(ping) [rule \"two\": duplicated | delivery: twice]", "deliver b \(ping)", "deliver b \(ping)",
        ])
    }

    @Test("disconnect before: not delivered, both sides closed; the session finishes when both are gone")
    func disconnectBefore() {
        let p = Playbook.relaying(rules: "rules:\n  - {name: cut, match: {type: ping}, action: {disconnect: before}}\n")
        #expect(p >> .received(Msg.ping, from: .a) == ["flush b", "close a", "close b"])
        #expect(p.core.closeReason?.kind == .disconnected && p.core.closeReason?.detail == "rule disconnect before (-)")
        #expect(p >> .received(Msg.pong, from: .b) == [])
        #expect(p >> .closed(.a) == [])
        #expect(p >> .closed(.b) == ["finished disconnected"])
    }

    @Test("disconnect after and after-receive: delivered and flushed, then both sides closed",
          arguments: [DisconnectKind.after, .afterReceive])
    func disconnectAfter(kind: DisconnectKind) {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {type: ping}, action: {disconnect: \(kind.rawValue)}}\n")
        #expect(p >> .received(Msg.ping, from: .a) == ["deliver b \(ping)", "flush b", "close a", "close b"])
        #expect(p.core.closeReason?.detail == "rule disconnect \(kind.rawValue) (\(kind.symbol))")
    }

    @Test("disconnect drop: not delivered, the connection carries on")
    func disconnectDrop() {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {type: ping}, action: {disconnect: drop}}\n")
        #expect(p >> .received(Msg.ping, from: .a) == [])
        #expect(p >> .received(Msg.ping, from: .a) == [])
        #expect(p >> .received(Msg.pong, from: .a) == ["deliver b \(pong)"])
        #expect(p.core.lifecycle == .relaying)
    }

    @Test("blackhole: not delivered, nothing more relayed, neither side read; sockets stay open")
    func blackhole() {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {type: ping}, action: {disconnect: blackhole}}\n", records: true,
                                  hidden: ["log", "publish", "kick", "cancel"])
        #expect(p >> .received(Msg.ping, from: .a) == [
            "record a->b \(ping) [rule \"rule1\": disconnect blackhole (0) | delivery: none]",
            "flush b", "event rule-halt kind=blackhole", "read a off", "read b off",
        ])
        #expect(p.core.lifecycle == .halted(.blackhole))
        #expect(p >> .received(Msg.pong, from: .b) == [
            "record b->a \(pong) [not delivered: the connection is blackhole by a rule | delivery: none]",
        ])
        #expect(p.core.isConnected && !p.core.acceptsInjections)
    }

    @Test("stall: delivered, then nothing more relayed either way; reading goes on, sockets stay open")
    func stall() {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {type: ping}, action: {disconnect: stall}}\n",
                                  hidden: ["log", "publish", "kick", "cancel"])
        #expect(p >> .received(Msg.ping, from: .a) == ["deliver b \(ping)", "flush b"])
        #expect(p.core.lifecycle == .halted(.stall))
        #expect(p >> .received(Msg.pong, from: .b) == [])
        #expect(p >> .readComplete(.b) == [])
    }

    @Test("a delay before a disconnect: the delayed message goes first, then the connection closes")
    func delayThenDisconnect() {
        let p = Playbook.relaying(rules: """
            rules:
              - {match: {type: ping}, action: {delay: 20}}
              - {match: {type: pong}, action: {disconnect: after}}
            """)
        _ = p >> .received(Msg.ping, from: .a)
        #expect(p >> .received(Msg.pong, from: .a) == ["wake release a->b +20ms"])
        p.advance(milliseconds: 20)
        #expect(p >> .timerFired(.release(.aToB)) == ["deliver b \(ping)", "deliver b \(pong)", "flush b", "close a", "close b"])
    }

    @Test("an injected message counts for the phases after it (the record/replay disagreement, fixed)")
    func injectedPhases() {
        // b's init is injected when a's arrives; the connection leaves `init` only if the tracker sees it.
        let p = Playbook.relaying(rules: """
            rules:
              - {match: {type: init, dir: a->b}, action: {inject: {hex: "001000000000", dir: b->a}}}
              - {name: opening-only, match: {custom: true, phase: opening}, action: drop}
            """)
        _ = p >> .received(Msg.initMessage, from: .a)
        #expect(p.core.stage.phases.connectionPhase == .opening)
        #expect(p >> .received(Msg.custom, from: .a) == [])
    }
}

@Suite("relay core: the custom-message hook")
struct HookTranscripts {
    @Test("continue, drop and replace; the verdict is recorded as a hook event naming the message")
    func verdicts() {
        let p = Playbook.relaying(records: true, hook: true)
        #expect(p >> .received(Msg.custom, from: .a) == ["record a->b \(custom)", "hook a->b \(custom)"])
        #expect(p >> .hookAnswered(.aToB, .continue, problem: nil)
            == ["event hook direction=a->b message=0 result=continue", "deliver b \(custom)", "flush b"])
        _ = p >> .received(Msg.custom, from: .a)
        #expect(p >> .hookAnswered(.aToB, .drop, problem: nil) == ["event hook direction=a->b message=1 result=drop", "flush b"])
        _ = p >> .received(Msg.custom, from: .b)
        #expect(p >> .hookAnswered(.bToA, .replace(Msg.custom2), problem: nil) == [
            "record b->a \(custom2) [delivery: replacement | replacement for #2 by the custommsg hook]",
            "event hook direction=b->a message=2 payload=\(custom2) result=replace", "deliver a \(custom2)", "flush a",
        ])
    }

    @Test("a hook that times out is ignored: the message continues and the event says why")
    func timeout() {
        let p = Playbook.relaying(records: true, hook: true, hidden: ["publish", "kick", "cancel", "reading"])
        _ = p >> .received(Msg.custom, from: .a)
        #expect(p >> .hookAnswered(.aToB, .continue, problem: "timed out after 5000 ms") == [
            "log warning hook ignored (message continues): timed out after 5000 ms",
            "event hook direction=a->b message=0 result=continue (hook ignored: timed out after 5000 ms)", "deliver b \(custom)", "flush b",
        ])
    }

    @Test("order is kept behind a hook: later messages that way wait; the next question goes before the answer; the other way flows")
    func order() {
        let p = Playbook.relaying(hook: true)
        #expect(p >> .received(Msg.custom, from: .a) == ["hook a->b \(custom)"])
        #expect(p >> .received(Msg.ping, from: .a) == [])
        // Pipelined: asked at once, though the first is not answered yet.
        #expect(p >> .received(Msg.custom2, from: .a) == ["hook a->b \(custom2)"])
        #expect(p >> .received(Msg.pong, from: .b) == ["deliver a \(pong)"])
        #expect(p >> .hookAnswered(.aToB, .continue, problem: nil)
            == ["deliver b \(custom)", "deliver b \(ping)", "flush b"])
        #expect(p >> .hookAnswered(.aToB, .drop, problem: nil) == ["flush b"])
    }

    @Test("answers are taken in the order asked; one that arrives while a delay holds the head waits its turn; injections go around the message")
    func pipelinedAnswersAndInjections() {
        let p = Playbook.relaying(rules: """
            rules:
              - {match: {type: ping}, action: {delay: 50}}
            """, records: true, hook: true, hidden: ["publish", "kick", "cancel", "reading", "wake"])
        _ = p >> .received(Msg.ping, from: .a)
        #expect(p >> .received(Msg.custom, from: .a) == ["record a->b \(custom)", "hook a->b \(custom)"])
        #expect(p >> .received(Msg.custom2, from: .a) == ["record a->b \(custom2)", "hook a->b \(custom2)"])
        // Both answered while the delay holds the head: nothing goes yet.
        #expect(p >> .hookDecided(.aToB, HookAnswer(.continue, injectBefore: [[0x80, 0x05]], by: "p")) == ["flush b"])
        #expect(p >> .hookDecided(.aToB, HookAnswer(.drop, injectAfter: [[0x80, 0x07]], by: "p")) == ["flush b"])
        p.advance(milliseconds: 50)
        let released = p >> .timerFired(.release(.aToB))
        #expect(released.filter { $0.hasPrefix("deliver") }
            == ["deliver b \(ping)", "deliver b 8005", "deliver b \(custom)", "deliver b 8007"])
        #expect(released.contains("record a->b 8005 [injected by lnrr | delivery: injected | injected before #1 by p]"))
        #expect(released.contains("event hook by=p direction=a->b message=2 result=drop"))
    }

    @Test("rules run first: a custom message the rules drop never reaches the hook; a replacement does")
    func rulesFirst() {
        let p = Playbook.relaying(rules: """
            rules:
              - {match: {type: 32769, nth: 1}, action: drop}
              - {match: {type: 32769}, action: {replace: {hex: 8003beef}}}
            """, hook: true)
        #expect(p >> .received(Msg.custom, from: .a) == [])
        #expect(p >> .received(Msg.custom, from: .a) == ["hook a->b \(custom2)"])
    }

    @Test("a close while a hook deliberates: the late verdict changes nothing")
    func closeMidHook() {
        let p = Playbook.relaying(hook: true)
        _ = p >> .received(Msg.custom, from: .a)
        _ = p >> .received(Msg.ping, from: .a)
        #expect(p >> .closed(.b) == ["close a"])
        #expect(p >> .hookAnswered(.aToB, .continue, problem: nil) == [])
        #expect(p >> .closed(.a) == ["finished eof"])
    }
}

@Suite("relay core: control socket, back-pressure and every way a session ends")
struct ControlAndCloseTranscripts {
    @Test("control inject: recorded as lnrr's, delivered behind what waits, flushed; refused before b is up")
    func controlInject() {
        let early = Playbook()
        _ = early >> .attached(.a, remoteAddress: nil)
        #expect(!early.core.acceptsInjections)
        let p = Playbook.relaying(records: true)
        #expect(p.core.acceptsInjections)
        #expect(p >> .inject(Msg.custom, .bToA, source: "sendcustommsg") == [
            "record b->a \(custom) [injected by lnrr | delivery: injected | injected by sendcustommsg]", "deliver a \(custom)", "flush a",
        ])
    }

    @Test("control inject counts for phases, as the rules' injections do")
    func controlInjectPhases() {
        let p = Playbook.relaying()
        _ = p >> .received(Msg.initMessage, from: .a)
        _ = p >> .inject(Msg.initMessage, .bToA, source: "inject")
        #expect(p.core.stage.phases.connectionPhase == .opening)
    }

    @Test("recording back-pressure stops reading both sides, and resumes; recorded as events")
    func recorderBackpressure() {
        let p = Playbook.relaying(records: true, hidden: ["log", "publish", "kick", "cancel"])
        #expect(p >> .recorderBackpressure(true) == ["event backpressure cause=recording on=true", "read a off", "read b off"])
        #expect(p >> .recorderBackpressure(true) == [])
        #expect(p >> .recorderBackpressure(false) == ["event backpressure cause=recording on=false", "read a on", "read b on"])
    }

    @Test("a side that cannot take more stops the other side's reads until it can")
    func writability() {
        let p = Playbook.relaying(hidden: ["log", "publish", "kick", "cancel"])
        #expect(p >> .writabilityChanged(.b, writable: false) == ["read a off"])
        #expect(p >> .writabilityChanged(.a, writable: false) == ["read b off"])
        #expect(p >> .writabilityChanged(.b, writable: true) == ["read a on"])
    }

    @Test("what waits is bounded: above the hold limit the sending side is not read")
    func holdLimit() {
        let p = Playbook(holdLimit: 10, hidden: ["log", "publish", "kick", "cancel", "wake"])
        _ = p >> .attached(.a, remoteAddress: nil)
        _ = p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true)
        #expect(p >> .received(Msg.ping, from: .a) == [])
        #expect(p >> .received(Msg.ping, from: .a) == ["read a off"])
        _ = p >> .attached(.b, remoteAddress: nil)
        #expect(p >> .handshakeCompleted(.b, remoteNodeID: Playbook.nodeB, keyHeld: false)
            == ["deliver b \(ping)", "deliver b \(ping)", "flush b", "read a on"])
    }

    @Test("many small messages behind a slow hook: the count is bounded as well as the bytes")
    func holdCount() {
        let p = Playbook.relaying(hook: true, hidden: ["log", "publish", "kick", "cancel", "hook"])
        _ = p >> .received(Msg.custom, from: .a)
        var paused = 0
        for i in 1...(Playbook.Core.holdCountLimit + 1) {
            if p >> .received(Msg.pong, from: .a) == ["read a off"] { paused = i }
        }
        #expect(paused == Playbook.Core.holdCountLimit)
        #expect(!p.core.mayRead(.a) && p.core.mayRead(.b))
        let released = p >> .hookAnswered(.aToB, .continue, problem: nil)
        #expect(released.filter { $0.hasPrefix("deliver b") }.count == Playbook.Core.holdCountLimit + 2)
        #expect(released.last == "read a on")
    }

    @Test("a close while a delay holds messages: they are not delivered, the timer changes nothing")
    func closeMidHold() {
        let p = Playbook.relaying(rules: "rules:\n  - {match: {type: ping}, action: {delay: 50}}\n", hidden: ["log", "publish", "kick", "reading"])
        _ = p >> .received(Msg.ping, from: .a)
        _ = p >> .received(Msg.pong, from: .a)
        #expect(p >> .closed(.a) == ["cancel release(LNWire.Direction.aToB)", "cancel release(LNWire.Direction.bToA)", "cancel handshake", "close b"])
        p.advance(milliseconds: 50)
        #expect(p >> .timerFired(.release(.aToB)) == [])
        #expect(p >> .closed(.b) == ["finished eof"])
    }

    @Test("every close path records its reason", arguments: [
        ("eof a", CloseReason.Kind.eof, "a"), ("eof b", .eof, "b"), ("upstream", .upstreamUnreachable, "b"),
        ("mac", .macFailure, "b"), ("control", .disconnected, "-"), ("recording", .error, "-"), ("shutdown", .shutdown, "-"),
    ])
    func closePaths(path: String, kind: CloseReason.Kind, by: String) {
        let p = Playbook.relaying(records: true, hidden: ["log", "publish", "kick", "cancel", "reading", "record"])
        let event: SessionEvent<[UInt8]> = switch path {
        case "eof a": .closed(.a)
        case "eof b": .closed(.b)
        case "upstream": .upstreamUnreachable("127.0.0.1:9736: connection refused")
        case "mac": .failed(CloseReason(side: .b, kind: .macFailure, detail: "bad MAC"))
        case "control": .disconnect
        case "recording": .recordingFailed("No space left on device")
        default: .shutdown
        }
        let lines = p >> event
        #expect(lines.first?.hasPrefix("event close") == true)
        #expect(lines.first?.contains("reason=\(kind.rawValue)") == true)
        #expect(by == "-" ? lines.first?.contains("by=") == false : lines.first?.contains("by=\(by)") == true)
        #expect(p.core.closeReason?.kind == kind)
        _ = p >> .closed(.a)
        #expect(p >> .closed(.b) == ["finished \(kind.rawValue)"] || path == "eof b" || path == "eof a")
        if case .finished = p.core.lifecycle {} else { Issue.record("not finished: \(p.core.lifecycle)") }
    }

    @Test("handshake timeouts name the side that was late")
    func handshakeTimeouts() {
        let p = Playbook(records: true, recordFailedHandshakes: true, hidden: ["log", "publish", "kick", "cancel", "reading"])
        _ = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        let lines = p >> .timerFired(.handshake)
        #expect(lines.contains("event close by=a detail=a did not complete its handshake within 30000 ms reason=handshake-failure"))
        #expect(lines.last == "close a")
        #expect(p >> .closed(.a) == ["finished handshake-failure"])

        let q = Playbook()
        _ = q >> .attached(.a, remoteAddress: nil)
        _ = q >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true)
        _ = q >> .attached(.b, remoteAddress: nil)
        #expect(q >> .timerFired(.handshake) == ["close a", "close b"])
        #expect(q.core.closeReason == CloseReason(side: .b, kind: .handshakeFailure, detail: "b did not answer the handshake within 30000 ms"))
    }

    @Test("the recording cannot be created: the session ends, with nothing more done")
    func recordingUnavailable() {
        let p = Playbook(records: true, hidden: ["log", "publish", "kick", "cancel", "reading", "wake"])
        _ = p >> .attached(.a, remoteAddress: nil)
        _ = p >> .handshakeCompleted(.a, remoteNodeID: Playbook.nodeA, keyHeld: true)
        #expect(p >> .recordingUnavailable("/read-only: Permission denied") == ["close a"])
        #expect(p.core.closeReason?.detail == "recording could not be created: /read-only: Permission denied")
        // The upstream connection that comes up afterwards is closed at once.
        #expect(p >> .attached(.b, remoteAddress: nil) == ["close b"])
        #expect(p >> .closed(.a) == ["finished error"])
    }
}
