import Testing
@testable import LNWire

private typealias M = PhaseMsg

/// Observes one message and checks the phases it reports.
@discardableResult
private func step(
    _ tracker: inout PhaseTracker, _ message: [UInt8], _ direction: Direction,
    _ before: ChannelPhase, _ after: ChannelPhase,
    sourceLocation: SourceLocation = #_sourceLocation
) -> PhaseObservation {
    let seen = tracker.observe(message, direction: direction)
    #expect(seen.before == before, "before", sourceLocation: sourceLocation)
    #expect(seen.after == after, "after", sourceLocation: sourceLocation)
    return seen
}

private let temp1 = M.fill(32, 0x11)
private let fundingTxid = (0..<32).map { UInt8($0 * 7 + 3) }

/// BOLT 2: channel_id = funding_txid XOR funding_output_index, the index big-endian in the last
/// two bytes. Computed here independently of the tracker.
private func v1ChannelID(txid: [UInt8], index: UInt16) -> [UInt8] {
    var id = txid
    id[30] ^= UInt8(index >> 8)
    id[31] ^= UInt8(index & 0xff)
    return id
}

/// Runs a v1 open to `channel` and returns the tracker and the final channel id.
private func openedV1(index: UInt16 = 0x0102) -> (PhaseTracker, [UInt8]) {
    var t = trackerAfterInit()
    let final = v1ChannelID(txid: fundingTxid, index: index)
    _ = t.observe(M.openChannel(temp1), direction: .aToB)
    _ = t.observe(M.acceptChannel(temp1), direction: .bToA)
    _ = t.observe(M.fundingCreated(temp1, txid: fundingTxid, index: index), direction: .aToB)
    _ = t.observe(M.fundingSigned(final), direction: .bToA)
    _ = t.observe(M.channelReady(final), direction: .aToB)
    _ = t.observe(M.channelReady(final), direction: .bToA)
    return (t, final)
}

@Suite("Phases")
struct PhasesTests {
    @Test func connectionStartsInInitUntilBothInits() {
        var t = PhaseTracker()
        #expect(t.connectionPhase == .initializing)
        step(&t, M.ping(), .aToB, .initializing, .initializing)
        let first = step(&t, M.initMessage(), .aToB, .initializing, .initializing)
        #expect(first.changes.isEmpty)
        // A repeated init from the same side does not complete the exchange.
        step(&t, M.initMessage(), .aToB, .initializing, .initializing)
        let second = step(&t, M.initMessage(), .bToA, .initializing, .opening)
        #expect(second.channel == nil)
        #expect(second.changes == [PhaseChange(channel: nil, from: .initializing, to: .opening)])
        #expect(second.changes.first?.description == "connection: init -> opening")
        // With no channel the peer belongs to openingd: custom messages carry `opening`.
        let custom = step(&t, M.custom(), .bToA, .opening, .opening)
        #expect(custom.channel == nil && custom.phase == .opening)
    }

    @Test func v1OpenPaymentsAndLegacyClose() throws {
        var t = trackerAfterInit()
        let temp = try #require(ChannelID(bytes: temp1))
        let finalBytes = v1ChannelID(txid: fundingTxid, index: 0x0102)
        let final = try #require(ChannelID(bytes: finalBytes))
        #expect(final != temp)

        let open = step(&t, M.openChannel(temp1), .aToB, .opening, .opening)
        #expect(open.channel == temp)
        #expect(open.changes == [PhaseChange(channel: temp, from: .opening, to: .opening, isNewChannel: true)])
        let accept = step(&t, M.acceptChannel(temp1), .bToA, .opening, .opening)
        #expect(accept.channel == temp && accept.changes.isEmpty)

        // funding_created still carries the temporary id; it is reported under the id it creates.
        let created = step(&t, M.fundingCreated(temp1, txid: fundingTxid, index: 0x0102), .aToB, .opening, .opening)
        #expect(created.channel == final)
        #expect(created.changes == [PhaseChange(channel: final, from: .opening, to: .opening, renamedFrom: temp)])
        #expect(created.changes.first?.description == "\(final.shortHex) (was 1111..1111): opening")

        let signed = step(&t, M.fundingSigned(finalBytes), .bToA, .opening, .opening)
        #expect(signed.channel == final)
        // Before channel_ready, custom messages still go to openingd.
        step(&t, M.custom(), .aToB, .opening, .opening)

        let ready = step(&t, M.channelReady(finalBytes), .aToB, .opening, .channel)
        #expect(ready.changes == [
            PhaseChange(channel: final, from: .opening, to: .channel),
            PhaseChange(channel: nil, from: .opening, to: .channel),
        ])
        let readyBack = step(&t, M.channelReady(finalBytes), .bToA, .channel, .channel)
        #expect(readyBack.changes.isEmpty)
        #expect(t.channels.count == 1)
        #expect(t.channels.first?.id == final && t.channels.first?.temporaryID == temp)
        #expect(t.channel(temp)?.id == final)  // the temporary id still finds the channel
        step(&t, M.custom(), .bToA, .channel, .channel)

        // A payment a->b, settled: every message stays in `channel`.
        let payment: [([UInt8], Direction, Bool)] = [
            (M.updateAddHTLC(finalBytes, htlc: 0), .aToB, true),
            (M.commitmentSigned(finalBytes), .aToB, true),
            (M.revokeAndAck(finalBytes), .bToA, true),
            (M.commitmentSigned(finalBytes), .bToA, true),
            (M.revokeAndAck(finalBytes), .aToB, true),  // HTLC now irrevocably committed, still live
            (M.updateFulfillHTLC(finalBytes, htlc: 0), .bToA, true),
            (M.commitmentSigned(finalBytes), .bToA, true),
            (M.revokeAndAck(finalBytes), .aToB, true),
            (M.commitmentSigned(finalBytes), .aToB, true),
            (M.revokeAndAck(finalBytes), .bToA, false),
            (M.updateFee(finalBytes), .aToB, true),
            (M.commitmentSigned(finalBytes), .aToB, true),
            (M.revokeAndAck(finalBytes), .bToA, true),
            (M.commitmentSigned(finalBytes), .bToA, true),
            (M.revokeAndAck(finalBytes), .aToB, false),
        ]
        for (message, direction, pending) in payment {
            let seen = step(&t, message, direction, .channel, .channel)
            #expect(seen.changes.isEmpty)
            #expect(t.channel(final)?.hasPendingUpdates == pending)
        }

        // Cooperative close, legacy negotiation.
        step(&t, M.shutdown(finalBytes), .aToB, .channel, .channel)
        #expect(t.channel(final)?.hasSentShutdown(.aToB) == true)
        #expect(t.channel(final)?.hasSentShutdown(.bToA) == false)
        let bothShut = step(&t, M.shutdown(finalBytes, script: M.scriptB), .bToA, .channel, .closing)
        #expect(bothShut.changes.map(\.description) == ["\(final.shortHex): channel -> closing", "connection: channel -> closing"])
        #expect(t.connectionPhase == .closing)
        step(&t, M.custom(), .aToB, .closing, .closing)  // would reach closingd
        step(&t, M.closingSigned(finalBytes, fee: 1000), .aToB, .closing, .closing)
        step(&t, M.closingSigned(finalBytes, fee: 800), .bToA, .closing, .closing)
        step(&t, M.closingSigned(finalBytes, fee: 900), .aToB, .closing, .closing)
        let agreed = step(&t, M.closingSigned(finalBytes, fee: 900), .bToA, .closing, .closed)
        #expect(agreed.changes == [
            PhaseChange(channel: final, from: .closing, to: .closed),
            PhaseChange(channel: nil, from: .closing, to: .idle),
        ])
        #expect(agreed.changes.last?.description == "connection: closing -> idle")
        // With only a closed channel left the connection is idle (not `opening` again) ...
        step(&t, M.custom(), .aToB, .idle, .idle)
        #expect(t.connectionPhase == .idle)
        // Late messages for the closed channel change nothing.
        step(&t, M.closingSigned(finalBytes, fee: 900), .aToB, .closed, .closed)
    }

    @Test(arguments: [UInt16(0), 1, 0x0102, 0xffff])
    func v1ChannelIDFollowsTheSpecForEveryIndex(index: UInt16) throws {
        let (t, final) = openedV1(index: index)
        #expect(t.channels.first?.id == ChannelID(bytes: final))
        #expect(t.channels.first?.phase == .channel)
        // The index only touches the last two bytes.
        #expect(final.prefix(30) == fundingTxid.prefix(30))
    }

    /// v2 expected ids: SHA-256 digests computed at authoring time with python3's hashlib over
    /// `lesser basepoint || greater basepoint`, i.e. independently of lnrr and libsodium:
    ///   hashlib.sha256(bytes([2])+b'\xaa'*32 + bytes([3])+b'\x11'*32).hexdigest()
    ///   hashlib.sha256(bytes([2])+b'\x99'*32 + bytes([3])+b'\x22'*32).hexdigest()
    @Test(arguments: [
        // initiator's basepoint is the lesser
        (M.point(0x02, 0xaa), M.point(0x03, 0x11), "e8b3c3a8fa7456f9d26910ff0af0a14a1cc8d06294e0372a3a2995fda3ec820b"),
        // accepter's basepoint is the lesser
        (M.point(0x03, 0x22), M.point(0x02, 0x99), "7f316c4f79876420c9ab34ac6515a3434373c899c8e9db70e50aa2fe7ca4419f"),
    ])
    func v2InteractiveOpen(initiatorBasepoint: [UInt8], accepterBasepoint: [UInt8], expectedHex: String) throws {
        var t = trackerAfterInit()
        let tempBytes = M.fill(32, 0x2f)
        let temp = try #require(ChannelID(bytes: tempBytes))
        let finalBytes = phaseHex(expectedHex)
        let final = try #require(ChannelID(hex: expectedHex))

        let open = step(&t, M.openChannel2(tempBytes, revocationBasepoint: initiatorBasepoint), .aToB, .opening, .opening)
        #expect(open.channel == temp && open.changes.first?.isNewChannel == true)
        let accept = step(&t, M.acceptChannel2(tempBytes, revocationBasepoint: accepterBasepoint), .bToA, .opening, .opening)
        #expect(accept.channel == final)
        #expect(accept.changes == [PhaseChange(channel: final, from: .opening, to: .opening, renamedFrom: temp)])

        // Interactive construction, first commitment and funding signatures: all openingd's.
        let construction: [([UInt8], Direction)] = [
            (M.txAddInput(finalBytes, serial: 0), .aToB),
            (M.txComplete(finalBytes), .bToA),
            (M.txAddOutput(finalBytes, serial: 2), .aToB),
            (M.txAddInput(finalBytes, serial: 1), .bToA),
            (M.txComplete(finalBytes), .aToB),
            (M.txComplete(finalBytes), .bToA),
            (M.commitmentSigned(finalBytes), .aToB),
            (M.commitmentSigned(finalBytes), .bToA),
            (M.txSignatures(finalBytes), .bToA),
            (M.txSignatures(finalBytes), .aToB),
        ]
        for (message, direction) in construction {
            let seen = step(&t, message, direction, .opening, .opening)
            #expect(seen.channel == final && seen.changes.isEmpty)
        }
        step(&t, M.custom(), .aToB, .opening, .opening)
        step(&t, M.channelReady(finalBytes), .aToB, .opening, .channel)
        step(&t, M.channelReady(finalBytes), .bToA, .channel, .channel)
        #expect(t.channels.count == 1 && t.channels.first?.temporaryID == temp)
    }

    @Test func v2AbortBeforeSignaturesAbandonsTheOpen() throws {
        var t = trackerAfterInit()
        let tempBytes = M.fill(32, 0x3c)
        _ = t.observe(M.openChannel2(tempBytes, revocationBasepoint: M.point(0x02, 0xaa)), direction: .aToB)
        let finalBytes = phaseHex("e8b3c3a8fa7456f9d26910ff0af0a14a1cc8d06294e0372a3a2995fda3ec820b")
        _ = t.observe(M.acceptChannel2(tempBytes, revocationBasepoint: M.point(0x03, 0x11)), direction: .bToA)
        step(&t, M.txAddInput(finalBytes, serial: 0), .aToB, .opening, .opening)
        step(&t, M.txAbort(finalBytes), .bToA, .opening, .closed)
        step(&t, M.txAbort(finalBytes), .aToB, .closed, .closed)  // the echo
        // The connection's only channel was abandoned: idle.
        #expect(t.connectionPhase == .idle)
    }

    @Test func spliceStaysInChannel() {
        var (t, id) = openedV1()
        let splice: [([UInt8], Direction)] = [
            (M.stfu(id, initiator: true), .aToB),
            (M.stfu(id, initiator: false), .bToA),
            (M.spliceInit(id), .aToB),
            (M.spliceAck(id), .bToA),
            (M.txAddInput(id, serial: 0), .aToB),
            (M.txComplete(id), .bToA),
            (M.txAbort(id), .aToB),  // aborting a splice negotiation keeps the channel
            (M.txAbort(id), .bToA),
            (M.spliceInit(id), .aToB),
            (M.spliceAck(id), .bToA),
            (M.txAddInput(id, serial: 2), .aToB),
            (M.txComplete(id), .bToA),
            (M.txComplete(id), .aToB),
            (M.commitmentSigned(id), .aToB),
            (M.commitmentSigned(id), .bToA),
            (M.txSignatures(id), .bToA),
            (M.txSignatures(id), .aToB),
            (M.spliceLocked(id), .aToB),
            (M.spliceLocked(id), .bToA),
        ]
        for (message, direction) in splice {
            let seen = step(&t, message, direction, .channel, .channel)
            #expect(seen.changes.isEmpty)
        }
        #expect(t.channel(ChannelID(bytes: id)!)?.hasPendingUpdates == false)
    }

    @Test func reconnectGoesStraightToChannel() throws {
        let idBytes = v1ChannelID(txid: fundingTxid, index: 1)
        let id = try #require(ChannelID(bytes: idBytes))
        var t = trackerAfterInit()
        let first = step(&t, M.channelReestablish(idBytes), .aToB, .opening, .channel)
        #expect(first.channel == id)
        #expect(first.changes == [
            PhaseChange(channel: id, from: .opening, to: .channel, isNewChannel: true),
            PhaseChange(channel: nil, from: .opening, to: .channel),
        ])
        let second = step(&t, M.channelReestablish(idBytes), .bToA, .channel, .channel)
        #expect(second.changes.isEmpty)
        step(&t, M.custom(), .bToA, .channel, .channel)
        #expect(t.channels.count == 1)
    }

    @Test func shutdownWaitsForOutstandingUpdates() {
        var (t, id) = openedV1()
        // An HTLC a->b, fully committed on both sides but not yet removed.
        for (message, direction) in [
            (M.updateAddHTLC(id, htlc: 0), Direction.aToB), (M.commitmentSigned(id), .aToB),
            (M.revokeAndAck(id), .bToA), (M.commitmentSigned(id), .bToA), (M.revokeAndAck(id), .aToB),
        ] {
            step(&t, message, direction, .channel, .channel)
        }
        step(&t, M.shutdown(id), .aToB, .channel, .channel)
        step(&t, M.shutdown(id, script: M.scriptB), .bToA, .channel, .channel)  // HTLC still live
        step(&t, M.custom(), .aToB, .channel, .channel)
        // b fails it; the removal must go through the whole commitment exchange.
        step(&t, M.updateFailHTLC(id, htlc: 0), .bToA, .channel, .channel)
        step(&t, M.commitmentSigned(id), .bToA, .channel, .channel)
        step(&t, M.revokeAndAck(id), .aToB, .channel, .channel)
        step(&t, M.commitmentSigned(id), .aToB, .channel, .channel)
        let cleared = step(&t, M.revokeAndAck(id), .bToA, .channel, .closing)
        #expect(cleared.changes.count == 2)
        #expect(t.connectionPhase == .closing)
    }

    @Test func updatesOutOfOrderDoNotAdvanceTheExchange() {
        var (t, id) = openedV1()
        step(&t, M.shutdown(id), .aToB, .channel, .channel)
        step(&t, M.updateFee(id), .aToB, .channel, .channel)
        // b's revoke_and_ack and commitment_signed before a signed its update do not count.
        step(&t, M.revokeAndAck(id), .bToA, .channel, .channel)
        step(&t, M.commitmentSigned(id), .bToA, .channel, .channel)
        step(&t, M.revokeAndAck(id), .aToB, .channel, .channel)
        step(&t, M.shutdown(id, script: M.scriptB), .bToA, .channel, .channel)
        step(&t, M.commitmentSigned(id), .aToB, .channel, .channel)
        step(&t, M.revokeAndAck(id), .bToA, .channel, .channel)
        step(&t, M.commitmentSigned(id), .bToA, .channel, .channel)
        step(&t, M.revokeAndAck(id), .aToB, .channel, .closing)
    }

    @Test func closingInferredTooEarlyIsTakenBack() {
        // After a reconnect the tracker cannot see HTLCs added on an earlier connection: it infers
        // `closing` from the shutdowns, and an update proves channeld still owns the channel.
        var t = trackerAfterInit()
        let id = v1ChannelID(txid: fundingTxid, index: 3)
        step(&t, M.channelReestablish(id), .aToB, .opening, .channel)
        step(&t, M.channelReestablish(id), .bToA, .channel, .channel)
        step(&t, M.shutdown(id), .aToB, .channel, .channel)
        step(&t, M.shutdown(id, script: M.scriptB), .bToA, .channel, .closing)
        let back = step(&t, M.updateFulfillHTLC(id, htlc: 7), .bToA, .closing, .channel)
        #expect(back.changes.map(\.to) == [.channel, .channel])
        step(&t, M.commitmentSigned(id), .bToA, .channel, .channel)
        step(&t, M.revokeAndAck(id), .aToB, .channel, .channel)
        step(&t, M.commitmentSigned(id), .aToB, .channel, .channel)
        step(&t, M.revokeAndAck(id), .bToA, .channel, .closing)
        // Once a closing message has been seen, updates no longer take it back.
        step(&t, M.closingSigned(id, fee: 500), .aToB, .closing, .closing)
        step(&t, M.updateFee(id), .aToB, .closing, .closing)
    }

    @Test func simpleCloseEndsWhenEveryClosingCompleteIsSigned() {
        var (t, id) = openedV1()
        step(&t, M.shutdown(id), .aToB, .channel, .channel)
        step(&t, M.shutdown(id, script: M.scriptB), .bToA, .channel, .closing)
        let a = M.scriptA, b = M.scriptB
        step(&t, M.simpleClose(40, id, closer: a, closee: b, fee: 1000), .aToB, .closing, .closing)
        step(&t, M.simpleClose(40, id, closer: b, closee: a, fee: 750), .bToA, .closing, .closing)
        step(&t, M.simpleClose(41, id, closer: a, closee: b, fee: 1000), .bToA, .closing, .closing)
        step(&t, M.simpleClose(41, id, closer: b, closee: a, fee: 750), .aToB, .closing, .closed)
        // Fee bumping reopens the negotiation until it is signed.
        step(&t, M.simpleClose(40, id, closer: a, closee: b, fee: 1100), .aToB, .closed, .closing)
        step(&t, M.simpleClose(41, id, closer: a, closee: b, fee: 1100), .bToA, .closing, .closed)
    }

    @Test func closingMessagesImplyClosingWithoutShutdownsSeen() {
        var (t, id) = openedV1()
        step(&t, M.closingSigned(id, fee: 300), .aToB, .channel, .closing)
        var (t2, id2) = openedV1()
        step(&t2, M.simpleClose(40, id2, closer: M.scriptA, closee: M.scriptB, fee: 9), .bToA, .channel, .closing)
        step(&t2, M.simpleClose(41, id2, closer: M.scriptA, closee: M.scriptB, fee: 9), .aToB, .closing, .closed)
    }

    @Test func twoChannelsOnOneConnection() throws {
        var (t, xBytes) = openedV1(index: 0)
        let x = try #require(ChannelID(bytes: xBytes))
        let yTemp = M.fill(32, 0x99)
        let y = try #require(ChannelID(bytes: yTemp))

        let openY = step(&t, M.openChannel(yTemp), .bToA, .channel, .opening)  // Y is new: connection phase before
        #expect(openY.channel == y)
        #expect(t.connectionPhase == .channel)  // X is further along
        step(&t, M.acceptChannel(yTemp), .aToB, .opening, .opening)
        // X pays while Y is being opened; each message is attributed to its own channel.
        let add = step(&t, M.updateAddHTLC(xBytes, htlc: 0), .aToB, .channel, .channel)
        #expect(add.channel == x)
        step(&t, M.custom(), .aToB, .channel, .channel)

        // X shuts down and reaches closingd while Y is still opening.
        for (message, direction) in [
            (M.commitmentSigned(xBytes), Direction.aToB), (M.revokeAndAck(xBytes), .bToA),
            (M.commitmentSigned(xBytes), .bToA), (M.revokeAndAck(xBytes), .aToB),
            (M.updateFulfillHTLC(xBytes, htlc: 0), .bToA), (M.commitmentSigned(xBytes), .bToA),
            (M.revokeAndAck(xBytes), .aToB), (M.commitmentSigned(xBytes), .aToB), (M.revokeAndAck(xBytes), .bToA),
            (M.shutdown(xBytes), .aToB),
        ] {
            step(&t, message, direction, .channel, .channel)
        }
        step(&t, M.shutdown(xBytes, script: M.scriptB), .bToA, .channel, .closing)
        #expect(t.connectionPhase == .closing)
        #expect(t.channel(y)?.phase == .opening)

        let yFinal = v1ChannelID(txid: M.fill(32, 0xcd), index: 1)
        step(&t, M.fundingCreated(yTemp, txid: M.fill(32, 0xcd), index: 1), .bToA, .opening, .opening)
        step(&t, M.fundingSigned(yFinal), .aToB, .opening, .opening)
        step(&t, M.channelReady(yFinal), .bToA, .opening, .channel)
        #expect(t.connectionPhase == .closing)
        step(&t, M.closingSigned(xBytes, fee: 500), .aToB, .closing, .closing)
        let closedX = step(&t, M.closingSigned(xBytes, fee: 500), .bToA, .closing, .closed)
        #expect(closedX.changes.last == PhaseChange(channel: nil, from: .closing, to: .channel))
        #expect(t.channels.map(\.phase) == [.closed, .channel])
        #expect(t.channels.map(\.id) == [x, ChannelID(bytes: yFinal)!])
    }

    @Test func errorClosesItsChannelAndZeroIDClosesAll() throws {
        var (t, xBytes) = openedV1(index: 0)
        let yBytes = M.fill(32, 0x42)
        step(&t, M.openChannel(yBytes), .aToB, .channel, .opening)

        // A warning changes nothing, even for a channel.
        let warned = step(&t, M.warning(xBytes), .bToA, .channel, .channel)
        #expect(warned.channel == ChannelID(bytes: xBytes) && warned.changes.isEmpty)
        step(&t, M.warning(M.fill(32, 0)), .bToA, .channel, .channel)
        // An error for an unknown channel is attributed to that id, nothing more.
        let unknown = step(&t, M.error(M.fill(32, 0x77)), .bToA, .channel, .channel)
        #expect(unknown.channel == ChannelID(bytes: M.fill(32, 0x77)) && unknown.changes.isEmpty)
        #expect(t.channels.count == 2)

        let failed = step(&t, M.error(xBytes), .bToA, .channel, .closed)
        #expect(failed.changes.map(\.description) == [
            "\(ChannelID(bytes: xBytes)!.shortHex): channel -> closed", "connection: channel -> opening",
        ])
        #expect(t.channel(ChannelID(bytes: yBytes)!)?.phase == .opening)

        let all = step(&t, M.error(M.fill(32, 0)), .aToB, .opening, .idle)
        #expect(all.channel == nil)
        #expect(all.changes == [PhaseChange(channel: ChannelID(bytes: yBytes)!, from: .opening, to: .closed),
                                PhaseChange(channel: nil, from: .opening, to: .idle)])
        #expect(t.channels.allSatisfy { $0.phase == .closed })
        // A closed channel's id can be opened again.
        let reopened = step(&t, M.openChannel(yBytes), .aToB, .idle, .opening)
        #expect(reopened.changes.contains(PhaseChange(channel: nil, from: .idle, to: .opening)))
        #expect(reopened.changes.first?.isNewChannel == true)
        #expect(t.channels.count == 2)
    }

    @Test func gossipAndCustomMessagesTakeTheFastPath() {
        var (t, _) = openedV1()
        for message in [M.channelUpdate(), M.custom(), M.custom(32768), M.custom(65535), M.ping(), M.pong(),
                        M.message(7, M.u16(0)), M.message(513, M.fill(40, 1))] {
            let seen = step(&t, message, .bToA, .channel, .channel)
            #expect(seen.channel == nil)
            #expect(seen.changes.isEmpty)
            #expect(seen.changes.capacity == 0)  // nothing was allocated for it
        }
    }

    @Test func tooShortMessagesAreNotUsed() {
        var t = trackerAfterInit()
        let final = v1ChannelID(txid: fundingTxid, index: 9)
        _ = t.observe(M.openChannel(temp1), direction: .aToB)
        // funding_created one byte short of its output index: no rename.
        let created = M.fundingCreated(temp1, txid: fundingTxid, index: 9)
        step(&t, Array(created.prefix(67)), .aToB, .opening, .opening)
        #expect(t.channels.first?.temporaryID == nil)
        // channel_ready without a whole channel_id: not attributed, no phase change.
        let shortReady = step(&t, Array(M.channelReady(temp1).prefix(33)), .aToB, .opening, .opening)
        #expect(shortReady.channel == nil)
        // open_channel2 cut before the end of revocation_basepoint: not tracked at all.
        let open2 = M.openChannel2(M.fill(32, 0x55), revocationBasepoint: M.point(0x02, 0xaa))
        step(&t, Array(open2.prefix(179)), .aToB, .opening, .opening)
        #expect(t.channels.count == 1)
        // closing_signed without its fee: not used.
        step(&t, Array(M.closingSigned(final, fee: 1).prefix(41)), .aToB, .opening, .opening)
        #expect(t.channels.count == 1)
        for n in 0..<2 {
            step(&t, Array(M.ping().prefix(n)), .aToB, .opening, .opening)
        }
    }

    @Test func malformedInputNeverCrashes() {
        var random = PhaseTestRandom(state: 0x9e37_79b9_7f4a_7c15)
        let interesting: [UInt16] = [1, 2, 16, 17, 18, 32, 33, 34, 35, 36, 38, 39, 40, 41, 64, 65, 66, 67, 68, 69, 70,
                                     71, 72, 73, 74, 77, 80, 81, 127, 128, 130, 131, 132, 133, 134, 135, 136, 259]
        var t = PhaseTracker()
        // Every type at every length up to past the longest prefix the tracker reads.
        for type in interesting {
            for length in 0...200 {
                let message = Array(M.u16(type).prefix(length)) + random.bytes(max(0, length - 2))
                _ = t.observe(message, direction: .aToB)
            }
        }
        // Random streams, with channel ids from a small pool so channels actually evolve.
        let pool = (0..<4).map { M.fill(32, UInt8($0)) }
        for round in 0..<20_000 {
            let type = interesting[random.below(interesting.count)]
            var message = M.u16(type)
            if type == 32 || type == 64 { message += M.chainHash }
            message += pool[random.below(pool.count)] + random.bytes(random.below(200))
            let seen = t.observe(message, direction: round % 3 == 0 ? .bToA : .aToB)
            #expect(seen.changes.count <= PhaseTracker.maximumTrackedChannels + 1)
        }
        #expect(t.channels.count <= PhaseTracker.maximumTrackedChannels)
    }

    @Test func trackedChannelsAreBounded() {
        var t = trackerAfterInit()
        var random = PhaseTestRandom(state: 42)
        for _ in 0..<(PhaseTracker.maximumTrackedChannels + 10) {
            _ = t.observe(M.channelReestablish(random.bytes(32)), direction: .aToB)
        }
        #expect(t.channels.count == PhaseTracker.maximumTrackedChannels)
        // A new channel past the limit is only attributed.
        let extra = random.bytes(32)
        let seen = step(&t, M.channelReestablish(extra), .aToB, .channel, .channel)
        #expect(seen.channel == ChannelID(bytes: extra) && seen.changes.isEmpty)
        // Closed channels make room.
        _ = t.observe(M.error(M.fill(32, 0)), direction: .bToA)
        step(&t, M.channelReestablish(extra), .aToB, .idle, .channel)
        #expect(t.channels.count == PhaseTracker.maximumTrackedChannels)
    }

    @Test func channelIDForms() throws {
        let bytes = (0..<32).map { UInt8($0) }
        let id = try #require(ChannelID(bytes: bytes))
        #expect(id.bytes == bytes)
        #expect(id.hex == "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        #expect(id.shortHex == "0001..1e1f")
        #expect(id.description == "0001..1e1f")
        #expect(ChannelID(hex: id.hex.uppercased()) == id)
        #expect(ChannelID(bytes: bytes.dropLast()) == nil)
        #expect(ChannelID(hex: "abc") == nil)
        #expect(ChannelID(hex: String(repeating: "g", count: 64)) == nil)
        #expect(ChannelID.zero.isZero && !id.isZero)
    }

    @Test func phaseRawValuesAndOrder() {
        #expect(ChannelPhase.allCases.map(\.rawValue) == ["init", "idle", "opening", "channel", "closing", "closed"])
        #expect(ChannelPhase.allCases.sorted() == ChannelPhase.allCases)
        #expect(ChannelPhase(rawValue: "init") == .initializing)
        #expect(ChannelPhase.allCases.map(\.coreLightningDaemon) == ["connectd", "lightningd", "openingd", "channeld", "closingd", "onchaind"])
    }
}
