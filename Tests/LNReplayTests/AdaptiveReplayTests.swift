import Foundation
import LNRecording
import LNRelay
import LNRules
import LNWire
import Testing
@testable import LNReplay

// Messages built byte by byte from the BOLT 2 layouts, so the binding is checked against the spec's
// offsets and the spec's channel_id derivation, not against lnrr's own tables.

private let regtest = [UInt8](repeating: 0x06, count: 32)

private func msg(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] { [UInt8(type >> 8), UInt8(type & 0xff)] + payload }
private func id(_ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: 32) }
private func point(_ byte: UInt8) -> [UInt8] { [0x02] + [UInt8](repeating: byte, count: 32) }

/// open_channel: chain_hash, temporary_channel_id, then the rest (not read here).
private func openChannel(temp: [UInt8]) -> [UInt8] { msg(32, regtest + temp + [UInt8](repeating: 0, count: 200)) }
private func acceptChannel(temp: [UInt8]) -> [UInt8] { msg(33, temp + [UInt8](repeating: 0, count: 200)) }
/// funding_created: temporary_channel_id, funding_txid, funding_output_index, signature.
private func fundingCreated(temp: [UInt8], txid: [UInt8], index: UInt16) -> [UInt8] {
    msg(34, temp + txid + [UInt8(index >> 8), UInt8(index & 0xff)] + [UInt8](repeating: 0x55, count: 64))
}
private func fundingSigned(_ channel: [UInt8]) -> [UInt8] { msg(35, channel + [UInt8](repeating: 0x66, count: 64)) }
private func channelReady(_ channel: [UInt8]) -> [UInt8] { msg(36, channel + point(0x77)) }
/// BOLT 2: channel_id = funding_txid XOR funding_output_index (big-endian, in the last two bytes).
private func v1ChannelID(txid: [UInt8], index: UInt16) -> [UInt8] {
    var out = txid
    out[30] ^= UInt8(index >> 8)
    out[31] ^= UInt8(index & 0xff)
    return out
}
private let initMessage: [UInt8] = [0x00, 0x10, 0, 0, 0, 0]
/// peer_storage (type 7): a u16 length and the blob.
private func peerStorage(_ byte: UInt8) -> [UInt8] { msg(7, [0, 4, byte, byte, byte, byte]) }

private func segment(_ steps: [ReplayStep]) -> ReplaySegment {
    ReplaySegment(path: "x", metadata: nil, steps: steps, problems: [], ignoredMessages: 0, hasClose: true,
                  endNanos: 0, recordedMessages: steps.count)
}

private func step(_ kind: ReplayStep.Kind, _ bytes: [UInt8], playing side: Side = .b) -> ReplayStep {
    ReplayStep(kind: kind, direction: kind == .send ? side.sending : side.receiving, bytes: bytes, recordIndex: nil,
               timestampNanos: 0, note: nil)
}

private func options(_ side: Side = .b, mode: MatchMode = .type, bind: Bool = true, order: ReplayOrder = .protocol,
                     window: Int = ReplayOptions.defaultOrderWindow) -> ReplayOptions {
    ReplayOptions(side: side, matcher: MessageMatcher(mode: mode), timing: .fast, timeoutNanos: 1_000_000_000,
                  ignore: .default, rules: nil, bind: bind, order: order, orderWindow: window)
}

private func outcomes(_ actions: [RunnerAction]) -> [StepOutcome] {
    actions.compactMap { if case .report(let o) = $0 { o } else { nil } }
}
private func sent(_ actions: [RunnerAction]) -> [[UInt8]] {
    actions.compactMap { if case .send(let b) = $0 { b } else { nil } }
}

@Suite("binding the live node's identifiers")
struct BindingTests {
    // The recording: a funded v1 channel, a funder (a) with temporary id 0x11.. and funding txid 0x22...
    let recordedTemp = id(0x11), recordedTxid = id(0x22)
    var recordedChannel: [UInt8] { v1ChannelID(txid: recordedTxid, index: 1) }
    // The live funder picks its own.
    let liveTemp = id(0x33), liveTxid = id(0x44)
    var liveChannel: [UInt8] { v1ChannelID(txid: liveTxid, index: 1) }

    /// lnrr plays the fundee (b) against a funder that chose fresh ids.
    func fundeeSteps() -> ReplaySegment {
        segment([
            step(.expect, openChannel(temp: recordedTemp)),
            step(.send, acceptChannel(temp: recordedTemp)),
            step(.expect, fundingCreated(temp: recordedTemp, txid: recordedTxid, index: 1)),
            step(.send, fundingSigned(recordedChannel)),
            step(.expect, channelReady(recordedChannel)),
            step(.send, channelReady(recordedChannel)),
            step(.close, []),
        ])
    }

    @Test("playing the fundee: temporary id from open_channel, final id from the live funding outpoint, both sent")
    func fundee() {
        var runner = ReplayRunner(segment: fundeeSteps(), segmentIndex: 0, firstStepNumber: 1, options: options())
        _ = runner.start(now: 0)
        let afterOpen = runner.received(openChannel(temp: liveTemp), now: 1)
        #expect(sent(afterOpen) == [acceptChannel(temp: liveTemp)])
        let afterFunding = runner.received(fundingCreated(temp: liveTemp, txid: liveTxid, index: 1), now: 2)
        #expect(sent(afterFunding) == [fundingSigned(liveChannel)])
        let end = runner.received(channelReady(liveChannel), now: 3)
        #expect(sent(end) == [channelReady(liveChannel)])
        let all = outcomes(afterOpen + afterFunding + end)
        #expect(!all.contains { $0.isDivergence })
        let pairs = all.compactMap(\.binding)
        #expect(pairs.map(\.kind) == [.temporaryChannelID, .channelID])
        #expect(pairs.map { $0.recorded.bytes } == [recordedTemp, recordedChannel])
        #expect(pairs.map { $0.live.bytes } == [liveTemp, liveChannel])
        #expect(all.first { $0.result == .sent }?.detail == "with the live node's channel id")
    }

    @Test("--match fields and exact compare through the binding; without it the id is a difference")
    func matchingThroughBinding() {
        for mode in [MatchMode.fields, .exact] {
            var runner = ReplayRunner(segment: fundeeSteps(), segmentIndex: 0, firstStepNumber: 1, options: options(mode: mode))
            _ = runner.start(now: 0)
            var all = outcomes(runner.received(openChannel(temp: liveTemp), now: 1))
            // Same funding outpoint as recorded under fresh temporary id: only the id differs.
            all += outcomes(runner.received(fundingCreated(temp: liveTemp, txid: recordedTxid, index: 1), now: 2))
            #expect(all.filter { $0.result == .matched }.count == 2, "\(mode)")
        }
        var unbound = ReplayRunner(segment: fundeeSteps(), segmentIndex: 0, firstStepNumber: 1, options: options(mode: .exact, bind: false))
        _ = unbound.start(now: 0)
        let open = outcomes(unbound.received(openChannel(temp: liveTemp), now: 1))
        #expect(open.first?.result == .diverged)
    }

    @Test("--bind off sends the recorded ids")
    func off() {
        var runner = ReplayRunner(segment: fundeeSteps(), segmentIndex: 0, firstStepNumber: 1, options: options(bind: false))
        _ = runner.start(now: 0)
        #expect(sent(runner.received(openChannel(temp: liveTemp), now: 1)) == [acceptChannel(temp: recordedTemp)])
        #expect(runner.binding.pairs.isEmpty)
    }

    @Test("v2: the channel id comes from both revocation basepoints, the live node's included")
    func dualFunded() throws {
        // open_channel2: type, chain_hash, temporary_channel_id, 2 x u32 feerates, 4 x u64, 2 x u16, u32
        // locktime, funding_pubkey, then revocation_basepoint. accept_channel2: type, temporary_channel_id,
        // 4 x u64, u32 minimum_depth, 2 x u16, funding_pubkey, then revocation_basepoint.
        func open2(temp: [UInt8], revocation: [UInt8]) -> [UInt8] {
            msg(64, regtest + temp + [UInt8](repeating: 0, count: 4 + 4 + 4 * 8 + 2 + 2 + 4) + point(0x01) + revocation + [UInt8](repeating: 0, count: 5 * 33))
        }
        func accept2(temp: [UInt8], revocation: [UInt8]) -> [UInt8] {
            msg(65, temp + [UInt8](repeating: 0, count: 4 * 8 + 4 + 2 + 2) + point(0x02) + revocation + [UInt8](repeating: 0, count: 5 * 33))
        }
        #expect(open2(temp: id(1), revocation: point(1)).count >= 2 + 145 + 33)
        func sha256(_ bytes: [UInt8]) -> [UInt8] {
            // The spec's derivation, computed by an independent SHA-256 (the one shasum uses) over the lesser point first.
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("v2-\(UUID().uuidString)")
            try! Data(bytes).write(to: url)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            p.arguments = [url.path]
            let pipe = Pipe()
            p.standardOutput = pipe
            try! p.run()
            p.waitUntilExit()
            let hex = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(64)
            return HexString.decode(String(hex))!
        }
        let recordedA = point(0x10), recordedB = point(0x20), liveB = point(0x30)
        let recordedChannel = sha256(recordedA + recordedB), liveChannel = sha256(recordedA + liveB)
        // lnrr plays the opener (a) against an accepter with a fresh revocation basepoint.
        let steps = segment([
            step(.send, open2(temp: id(0x11), revocation: recordedA), playing: .a),
            step(.expect, accept2(temp: id(0x11), revocation: recordedB), playing: .a),
            step(.send, msg(70, recordedChannel), playing: .a),   // tx_complete
            step(.close, [], playing: .a),
        ])
        var runner = ReplayRunner(segment: steps, segmentIndex: 0, firstStepNumber: 1, options: options(.a))
        _ = runner.start(now: 0)
        let actions = runner.received(accept2(temp: id(0x11), revocation: liveB), now: 1)
        #expect(sent(actions) == [msg(70, liveChannel)])
        #expect(runner.binding.pairs.map(\.live.bytes) == [liveChannel])
    }
}

@Suite("ordering only where the protocol orders")
struct OrderTests {
    // lnrr plays a; the live b sent peer_storage between two of its channel messages in the recording.
    func steps() -> ReplaySegment {
        segment([
            step(.send, initMessage, playing: .a),
            step(.expect, initMessage, playing: .a),
            step(.expect, peerStorage(1), playing: .a),
            step(.send, openChannel(temp: id(1)), playing: .a),
            step(.expect, acceptChannel(temp: id(1)), playing: .a),
            step(.send, fundingCreated(temp: id(1), txid: id(2), index: 0), playing: .a),
            step(.expect, fundingSigned(v1ChannelID(txid: id(2), index: 0)), playing: .a),
            step(.close, [], playing: .a),
        ])
    }

    @Test("protocol: peer_storage later than recorded is reordered, not a divergence")
    func later() {
        var runner = ReplayRunner(segment: steps(), segmentIndex: 0, firstStepNumber: 1, options: options(.a))
        var all = outcomes(runner.start(now: 0))
        all += outcomes(runner.received(initMessage, now: 1))
        // The replay went on without waiting for it: open_channel is already out.
        #expect(all.map(\.result) == [.sent, .matched, .sent])
        all += outcomes(runner.received(acceptChannel(temp: id(1)), now: 2))
        all += outcomes(runner.received(peerStorage(1), now: 3))
        all += outcomes(runner.received(fundingSigned(v1ChannelID(txid: id(2), index: 0)), now: 4))
        let reordered = all.filter { $0.result == .reordered }
        #expect(reordered.map(\.step) == [3])
        #expect(reordered.first?.detail == "recorded at step 3, came at step 7")
        #expect(!all.contains { $0.isDivergence })
        #expect(runner.isFinished)
    }

    @Test("protocol: peer_storage earlier than recorded is taken from later in the recording")
    func earlier() {
        let s = segment([
            step(.send, initMessage, playing: .a), step(.expect, initMessage, playing: .a),
            step(.send, openChannel(temp: id(1)), playing: .a), step(.expect, acceptChannel(temp: id(1)), playing: .a),
            step(.expect, peerStorage(1), playing: .a), step(.close, [], playing: .a),
        ])
        var runner = ReplayRunner(segment: s, segmentIndex: 0, firstStepNumber: 1, options: options(.a))
        var all = outcomes(runner.start(now: 0))
        all += outcomes(runner.received(peerStorage(1), now: 1))
        all += outcomes(runner.received(initMessage, now: 2))
        all += outcomes(runner.received(acceptChannel(temp: id(1)), now: 3))
        #expect(all.map(\.result) == [.sent, .reordered, .matched, .sent, .matched, .closed])
        #expect(all[1].step == 5)
    }

    @Test("strict: the same traffic is an unexpected message, and the verdict names the step it came at")
    func strict() {
        var runner = ReplayRunner(segment: steps(), segmentIndex: 0, firstStepNumber: 1, options: options(.a, order: .strict))
        _ = runner.start(now: 0)
        _ = runner.received(initMessage, now: 1)
        let actions = runner.received(acceptChannel(temp: id(1)), now: 2)
        let unexpected = outcomes(actions).first { $0.result == .unexpected }
        #expect(unexpected?.step == nil && unexpected?.atStep == 3)
    }

    @Test("protocol: a connection-level message that never comes is missing once its window has passed")
    func window() {
        var runner = ReplayRunner(segment: steps(), segmentIndex: 0, firstStepNumber: 1, options: options(.a, window: 1))
        var all = outcomes(runner.start(now: 0))
        all += outcomes(runner.received(initMessage, now: 1))
        all += outcomes(runner.received(acceptChannel(temp: id(1)), now: 2))
        let missing = all.filter { $0.result == .missing }
        #expect(missing.map(\.step) == [3])
        #expect(missing.first?.detail == "not within 1 steps of its recorded place")
    }

    /// channel_reestablish: channel_id, two u64 commitment numbers, a 32-byte secret and a point.
    func reestablish(_ channel: UInt8) -> [UInt8] { msg(136, id(channel) + [UInt8](repeating: 0, count: 8 + 8 + 32) + point(0x09)) }
    func shutdown(_ channel: UInt8) -> [UInt8] { msg(38, id(channel) + [0, 2, 0x51, 0x20]) }

    func twoChannels() -> ReplaySegment {
        segment([
            step(.send, initMessage, playing: .a), step(.expect, initMessage, playing: .a),
            step(.send, reestablish(0xa1), playing: .a), step(.send, reestablish(0xb2), playing: .a),
            step(.expect, reestablish(0xa1), playing: .a), step(.expect, reestablish(0xb2), playing: .a),
            step(.expect, shutdown(0xb2), playing: .a),
            step(.close, [], playing: .a),
        ])
    }

    @Test("protocol: two channels' messages may interleave differently; each channel keeps its order")
    func channels() {
        var runner = ReplayRunner(segment: twoChannels(), segmentIndex: 0, firstStepNumber: 1, options: options(.a))
        var all = outcomes(runner.start(now: 0))
        all += outcomes(runner.received(initMessage, now: 1))
        all += outcomes(runner.received(reestablish(0xb2), now: 2))   // channel b2 before a1
        all += outcomes(runner.received(reestablish(0xa1), now: 3))
        all += outcomes(runner.received(shutdown(0xb2), now: 4))
        #expect(all.map(\.result) == [.sent, .matched, .sent, .sent, .reordered, .matched, .matched, .closed])
        #expect(all[4].step == 6 && all[4].detail == "recorded at step 6 after other channels' messages, came at step 5")
        #expect(!all.contains { $0.isDivergence })

        // Within one channel the recorded order holds: b2's shutdown cannot overtake its reestablish.
        var inOrder = ReplayRunner(segment: twoChannels(), segmentIndex: 0, firstStepNumber: 1, options: options(.a))
        _ = inOrder.start(now: 0)
        _ = inOrder.received(initMessage, now: 1)
        #expect(outcomes(inOrder.received(shutdown(0xb2), now: 2)).map(\.result) == [.unexpected])

        // Strict order takes the first message of the awaited type, whatever its channel.
        var strict = ReplayRunner(segment: twoChannels(), segmentIndex: 0, firstStepNumber: 1,
                                  options: options(.a, mode: .fields, order: .strict))
        _ = strict.start(now: 0)
        _ = strict.received(initMessage, now: 1)
        let first = outcomes(strict.received(reestablish(0xb2), now: 2))
        #expect(first.map(\.result) == [.diverged] && first[0].differences.map(\.field) == ["channel_id"])
    }

    @Test("a channel message is never reordered")
    func channelMessages() {
        var runner = ReplayRunner(segment: steps(), segmentIndex: 0, firstStepNumber: 1, options: options(.a))
        _ = runner.start(now: 0)
        let all = outcomes(runner.received(acceptChannel(temp: id(1)), now: 1))
        #expect(all.map(\.result) == [.unexpected])
    }
}

@Suite("structured differences")
struct DifferenceTests {
    func initWith(port: UInt16) -> [UInt8] {
        // init with a remote_addr TLV (type 3): an IPv4 address descriptor (type 1), 127.0.0.1, the port.
        initMessage + [3, 7, 1, 127, 0, 0, 1, UInt8(port >> 8), UInt8(port & 0xff)]
    }

    @Test("--match fields ignores init's remote_addr by default")
    func remoteAddr() {
        #expect(MessageMatcher(mode: .fields).difference(expected: initWith(port: 40000), got: initWith(port: 40001)) == nil)
        let strict = MessageMatcher(mode: .fields, ignoredFields: [])
        #expect(strict.differences(expected: initWith(port: 40000), got: initWith(port: 40001)).count == 1)
    }

    @Test("each difference keeps the whole recorded and live value")
    func whole() {
        let long = MessageMatcher(mode: .fields, ignoredFields: [])
        let d = long.differences(expected: fundingSigned(id(1)), got: fundingSigned(id(1)).dropLast(1) + [0x67])
        #expect(d.count == 1 && d[0].field == "signature")
        #expect(d[0].recorded == .string(String(repeating: "66", count: 64)))
        #expect(d[0].summary.contains("...(130 chars)"))
        let bytes = MessageMatcher(mode: .exact).differences(expected: [0x80, 0x01, 1], got: [0x80, 0x01, 2, 3])
        #expect(bytes == [FieldDifference(field: "bytes", recorded: .string("800101"), live: .string("80010203"), offset: 2)])
        #expect(bytes[0].summary == "bytes differ from offset 2 (recorded 01, live 02); length recorded 3, live 4")
    }
}
