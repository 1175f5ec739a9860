import Foundation
import LNRecording
import LNRules
import LNWire
import Testing
@testable import LNReplay

/// A recording made the way the proxy writes one (delivery comments, hook events, close), so the
/// plan can be checked against what each receiver really got.
private func writeRecording(close: (by: String, reason: String)? = ("b", "eof")) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lnrr-replay-\(UUID().uuidString)").path
    let metadata = SessionMetadata(lnrrVersion: "test", sessionID: 1, startedNanos: 1_000_000_000,
                                   nodeA: "02" + String(repeating: "ab", count: 32), nodeB: "03" + String(repeating: "cd", count: 32),
                                   listen: "127.0.0.1:9735", upstream: "x@127.0.0.1:9736", transparent: true, syncMode: .message)
    let writer = try RecordingWriter(directory: dir, metadata: metadata, sync: .message)
    var t: UInt64 = 1_000_000_000
    func add(_ direction: Direction, _ bytes: [UInt8], _ comments: [String] = []) {
        t += 1_000_000
        writer.message(bytes, direction: direction, timestampNanos: t, comments: comments)
    }
    add(.aToB, initMessage)                                                          // 0
    add(.bToA, initMessage)                                                          // 1
    add(.aToB, [0x80, 0x01, 1], ["rule \"d\": dropped", "delivery: none"])           // 2
    add(.aToB, [0x80, 0x01, 2], ["rule \"x\": duplicated", "delivery: twice"])       // 3
    add(.aToB, [0x80, 0x01, 3], ["rule \"r\": replaced", "delivery: replaced"])      // 4
    add(.aToB, [0x80, 0x03, 3], ["delivery: replacement", "replacement for #4"])     // 5
    add(.aToB, [0x80, 0x05, 4], ["injected by lnrr", "delivery: injected"])          // 6
    add(.bToA, [0x80, 0x07, 5], ["injected by lnrr", "delivery: injected"])          // 7: not b's own
    add(.bToA, [0x80, 0x09, 6], ["rule \"d\": dropped", "delivery: none"])           // 8: b did send it
    add(.aToB, [0x80, 0x0b, 7])                                                      // 9: the hook drops it
    add(.aToB, [0x00, 0x12, 0, 1, 0, 0])                                             // 10: a ping, ignored
    writer.event(RecordingEvent(name: "hook", fields: ["direction": .string("a->b"), "message": .int(9), "result": .string("drop")]),
                 timestampNanos: t + 1)
    if let close {
        writer.event(RecordingEvent(name: "close", fields: ["by": .string(close.by), "reason": .string(close.reason)]),
                     timestampNanos: t + 2_000_000)
    }
    try writer.close()
    return writer.path
}

private let initMessage: [UInt8] = [0x00, 0x10, 0, 0, 0, 0]

@Suite("replay plans from recordings")
struct ReplayPlanTests {
    @Test("playing a: sends what b received, expects what b sent, expects b's close")
    func sideA() throws {
        let segment = try ReplayPlan.segment(path: try writeRecording(), side: .a, ignore: .default)
        let all = try segment.allSteps()
        let steps = all.map { ($0.kind, $0.recordIndex) }
        #expect(steps.map(\.0) == [.send, .expect, .send, .send, .send, .send, .expect, .expectClose])
        #expect(steps.map(\.1) == [0, 1, 3, 3, 5, 6, 8, nil])
        #expect(all[3].note == "duplicate")
        #expect(all[4].bytes == [0x80, 0x03, 3])
        #expect(segment.stepCount == all.count)
        #expect(segment.ignoredMessages == 1)
        #expect(!segment.truncated)
    }

    @Test("playing b: the mirror image; a's recorded messages are expected whatever rules did to them")
    func sideB() throws {
        let segment = try ReplayPlan.segment(path: try writeRecording(), side: .b, ignore: .default)
        let steps = try segment.allSteps()
        #expect(steps.map(\.kind) == [.expect, .send, .expect, .expect, .expect, .send, .expect, .close])
        #expect(steps.map(\.recordIndex) == [0, 1, 2, 3, 4, 7, 9, nil])
        #expect(segment.stepCount == steps.count)
    }

    @Test("a recording without a close is truncated and ends with lnrr closing")
    func truncated() throws {
        let segment = try ReplayPlan.segment(path: try writeRecording(close: nil), side: .a, ignore: TypeFilter([]))
        #expect(segment.truncated)
        let steps = try segment.allSteps()
        #expect(steps.last?.kind == .close)
        #expect(steps.contains { $0.recordIndex == 10 })   // nothing ignored: the ping is sent
    }

    @Test("offline puts the replay's own messages through the rules: injected records too, as a live replay sends them")
    func offlineIncludesInjected() throws {
        let (set, _) = RuleParser.parse(yaml: "rules:\n  - {name: x, match: {type: 32773}, action: drop}\n", file: "t")
        let path = try writeRecording()
        let (lines, _) = try OfflineReplay.run(path: path, rules: set, side: .a)
        #expect(lines.map(\.index) == [0, 1, 3, 3, 5, 6, 8])
        #expect(lines.filter { !$0.actions.isEmpty }.map(\.index) == [6])
        #expect(lines.first { $0.index == 6 }?.note == "injected by lnrr")
        // Playing b, a's injection is not b's own message and does not go through the rules.
        let (asB, _) = try OfflineReplay.run(path: path, rules: set, side: .b)
        #expect(asB.allSatisfy { $0.actions.isEmpty })
    }

    /// A recording of `count` custom messages a->b; a hook drops `dropped` (its verdict written
    /// after every message, as late as a file can have it).
    private func longRecording(count: Int, dropped: Int?) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lnrr-replay-\(UUID().uuidString)").path
        let metadata = SessionMetadata(lnrrVersion: "test", sessionID: 1, startedNanos: 1_000_000_000,
                                       nodeA: "02" + String(repeating: "ab", count: 32), nodeB: "03" + String(repeating: "cd", count: 32),
                                       listen: "127.0.0.1:9735", upstream: "x@127.0.0.1:9736", transparent: true, syncMode: .batch)
        let writer = try RecordingWriter(directory: dir, metadata: metadata, sync: .batch)
        for i in 0..<count {
            writer.message([0x80, 0x01, UInt8(i & 0xff), UInt8(i >> 8)], direction: .aToB, timestampNanos: 1_000_000_000 + UInt64(i))
        }
        if let dropped {
            writer.event(RecordingEvent(name: "hook", fields: ["direction": .string("a->b"), "message": .int(dropped), "result": .string("drop")]),
                         timestampNanos: 2_000_000_000)
        }
        writer.event(RecordingEvent(name: "close", fields: ["by": .string("a"), "reason": .string("eof")]), timestampNanos: 2_000_000_001)
        try writer.close()
        return writer.path
    }

    @Test("a hook verdict about a message older than the plan remembers still takes it out (a second pass)")
    func lateVerdict() throws {
        let count = ReplayPlan.recentMessages + 10
        for dropped in [0, count - 1] {   // forgotten by the first pass, and still remembered
            let segment = try ReplayPlan.segment(path: try longRecording(count: count, dropped: dropped), side: .a, ignore: .default)
            let steps = try segment.allSteps()
            #expect(segment.stepCount == count)   // count - 1 sends and the close
            #expect(steps.count == count)
            #expect(!steps.contains { $0.recordIndex == dropped })
            #expect(steps.compactMap(\.recordIndex) == Array(0..<count).filter { $0 != dropped })
        }
    }

    @Test("a recording changed under a replay is an error, not a different replay")
    func changedUnderneath() throws {
        let path = try longRecording(count: 100, dropped: nil)
        let segment = try ReplayPlan.segment(path: path, side: .a, ignore: .default)
        #expect(segment.stepCount == 101)
        let shorter = try longRecording(count: 50, dropped: nil)
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: shorter, toPath: path)
        #expect(throws: ReplayError.self) { try segment.allSteps() }
    }

    @Test("a runner plays a segment read from its file, step by step, as from an array")
    func runnerStreamsFromTheFile() throws {
        let path = try longRecording(count: 300, dropped: 7)
        let fromFile = try ReplayPlan.segment(path: path, side: .a, ignore: .default)
        let inMemory = ReplaySegment(path: path, metadata: fromFile.metadata, steps: try fromFile.allSteps(), problems: [],
                                     ignoredMessages: 0, hasClose: true, endNanos: fromFile.endNanos, recordedMessages: 300)
        func play(_ segment: ReplaySegment) -> [RunnerAction] {
            let options = ReplayOptions(side: .a, matcher: MessageMatcher(mode: .type), timing: .fast, timeoutNanos: 1_000_000_000,
                                        ignore: .default, rules: nil, orderWindow: 4)
            var runner = ReplayRunner(segment: segment, segmentIndex: 0, firstStepNumber: 1, options: options)
            var turn = runner.start(now: 1)
            var actions = turn
            var now: UInt64 = 1
            // A turn sends at most sendsPerTurn messages, then yields until the connection takes them.
            while turn.last == .yield {
                #expect(turn.filter { if case .send = $0 { true } else { false } }.count == ReplayRunner.sendsPerTurn)
                now += 1
                turn = runner.tick(now: now)
                actions += turn
            }
            return actions + runner.connectionClosed(now: now + 1)
        }
        let streamed = play(fromFile)
        #expect(streamed == play(inMemory))
        #expect(streamed.filter { if case .send = $0 { true } else { false } }.count == 299)
        #expect(streamed.filter { $0 == .yield }.count == 299 / ReplayRunner.sendsPerTurn)
        #expect(streamed.last == .finished)
    }

    @Test("--ignore parses names, numbers, ranges and words, and suggests names")
    func ignoreParsing() throws {
        let filter = try TypeFilter.parse("ping,130,32768-32800,gossip")
        #expect(filter.contains(18) && filter.contains(130) && filter.contains(32800) && filter.contains(258))
        #expect(!filter.contains(19) && !filter.contains(259) && !filter.contains(32801))
        #expect(try TypeFilter.parse("none").ranges.isEmpty)
        #expect(throws: ReplayError.self) { try TypeFilter.parse("pingg") }
    }
}

@Suite("matching live messages")
struct MatcherTests {
    let channelID = [UInt8](repeating: 0x11, count: 32)

    func closingSigned(fee: UInt8, sig: UInt8) -> [UInt8] {
        [0x00, 0x27] + channelID + [0, 0, 0, 0, 0, 0, 0x03, fee] + [UInt8](repeating: sig, count: 64)
    }

    @Test("fields mode leaves signatures out and names the field that differs")
    func fields() {
        let m = MessageMatcher(mode: .fields)
        #expect(m.difference(expected: closingSigned(fee: 0xe8, sig: 1), got: closingSigned(fee: 0xe8, sig: 2)) == nil)
        #expect(m.difference(expected: closingSigned(fee: 0xe8, sig: 1), got: closingSigned(fee: 0xe9, sig: 1))
                == "fee_satoshis: recorded 1000, live 1001")
        var strict = m
        strict.ignoredFields = []
        #expect(strict.difference(expected: closingSigned(fee: 0xe8, sig: 1), got: closingSigned(fee: 0xe8, sig: 2))?.hasPrefix("signature:") == true)
    }

    @Test("type and exact modes")
    func typeAndExact() {
        #expect(MessageMatcher(mode: .type).difference(expected: closingSigned(fee: 1, sig: 1), got: closingSigned(fee: 2, sig: 2)) == nil)
        #expect(MessageMatcher(mode: .type).difference(expected: closingSigned(fee: 1, sig: 1), got: initMessage)
                == "expected closing_signed, got init")
        #expect(MessageMatcher(mode: .exact).difference(expected: closingSigned(fee: 1, sig: 1), got: closingSigned(fee: 2, sig: 1))
                == "bytes differ from offset 41 (recorded 01, live 02)")
    }
}

@Suite("the replay state machine")
struct RunnerTests {
    func segment(_ steps: [ReplayStep]) -> ReplaySegment {
        ReplaySegment(path: "x", metadata: nil, steps: steps, problems: [], ignoredMessages: 0, hasClose: true,
                      endNanos: 0, recordedMessages: steps.count)
    }

    func step(_ kind: ReplayStep.Kind, _ bytes: [UInt8], at ms: UInt64) -> ReplayStep {
        ReplayStep(kind: kind, direction: kind == .send ? .aToB : .bToA, bytes: bytes, recordIndex: nil,
                   timestampNanos: ms * 1_000_000, note: nil)
    }

    func options(_ timing: ReplayTiming, rules: RuleSet? = nil) -> ReplayOptions {
        ReplayOptions(side: .a, matcher: MessageMatcher(mode: .type), timing: timing, timeoutNanos: 1_000_000_000,
                      ignore: .default, rules: rules)
    }

    func results(_ actions: [RunnerAction]) -> [StepOutcome.Result] {
        actions.compactMap { if case .report(let o) = $0 { o.result } else { nil } }
    }

    @Test("recorded timing waits out the recorded gap, scaled or not")
    func timing() {
        let steps = segment([step(.send, [0x80, 0x01], at: 0), step(.send, [0x80, 0x01, 1], at: 300), step(.close, [], at: 300)])
        for (timing, due) in [(ReplayTiming.recorded, UInt64(300_000_000)), (.scaled(0.5), 150_000_000), (.fast, 0)] {
            var runner = ReplayRunner(segment: steps, segmentIndex: 0, firstStepNumber: 1, options: options(timing))
            let first = runner.start(now: 0)
            if due == 0 {
                #expect(results(first) == [.sent, .sent, .closed])
                continue
            }
            #expect(first.contains(.wake(atNanos: due)))
            #expect(results(runner.tick(now: due - 1)) == [])
            #expect(results(runner.tick(now: due)) == [.sent, .closed])
        }
    }

    @Test("an expected message: matched, unexpected before it, missing after the timeout")
    func expectations() {
        let steps = segment([step(.send, initMessage, at: 0), step(.expect, initMessage, at: 1), step(.expect, [0x80, 0x03], at: 2),
                             step(.close, [], at: 3)])
        var runner = ReplayRunner(segment: steps, segmentIndex: 0, firstStepNumber: 1, options: options(.fast))
        #expect(results(runner.start(now: 0)) == [.sent])
        #expect(results(runner.received([0x80, 0x05], now: 10)) == [.unexpected])
        #expect(results(runner.received(initMessage, now: 20)) == [.matched])
        #expect(results(runner.tick(now: 20 + 999_999_999)) == [])
        let end = runner.tick(now: 20 + 1_000_000_000)
        #expect(results(end) == [.missing, .notRun])
        #expect(end.contains(.close) && end.last == .finished)
    }

    @Test("the live node closing while a message is expected is a missing message, at once")
    func peerCloses() {
        let steps = segment([step(.send, initMessage, at: 0), step(.expect, initMessage, at: 1), step(.close, [], at: 2)])
        var runner = ReplayRunner(segment: steps, segmentIndex: 0, firstStepNumber: 1, options: options(.fast))
        _ = runner.start(now: 0)
        let actions = runner.connectionClosed(now: 5)
        #expect(results(actions) == [.missing, .notRun])
        #expect(!actions.contains(.close))
        #expect(runner.isFinished)
    }

    @Test("pings from the live node are answered, not matched")
    func pings() {
        let steps = segment([step(.expect, initMessage, at: 0), step(.close, [], at: 1)])
        var runner = ReplayRunner(segment: steps, segmentIndex: 0, firstStepNumber: 1, options: options(.fast))
        _ = runner.start(now: 0)
        #expect(runner.received([0x00, 0x12, 0x00, 0x02, 0x00, 0x00], now: 1) == [.send([0x00, 0x13, 0x00, 0x02, 0, 0])])
    }

    @Test("replay rules: a delay holds the send, a drop keeps it back")
    func rules() {
        let (set, _) = RuleParser.parse(yaml: """
            rules:
              - {match: {type: 32769, nth: 1}, action: {delay: 50}}
              - {match: {type: 32769}, action: drop}
            """, file: "t")
        let steps = segment([step(.send, [0x80, 0x01], at: 0), step(.send, [0x80, 0x01], at: 0), step(.close, [], at: 0)])
        var runner = ReplayRunner(segment: steps, segmentIndex: 0, firstStepNumber: 1, options: options(.fast, rules: set))
        #expect(runner.start(now: 0) == [.wake(atNanos: 50_000_000)])
        let later = runner.tick(now: 50_000_000)
        #expect(later.first == .send([0x80, 0x01]))
        #expect(results(later) == [.sent, .dropped, .closed])
    }
}
