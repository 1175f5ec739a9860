import Testing
@testable import LNTransport

/// The machine drip-fed, as swift-nio-ssh tests its state machine: whatever the fragmentation, the
/// same actions come out; every failure and every early end is a precise, typed error.
@Suite("BOLT8Machine")
struct BOLT8MachineTests {
    typealias V = Vectors

    let actOne = V.bytes(V.actOne)
    let actTwo = V.bytes(V.actTwo)
    let actThree = V.bytes(V.actThree)
    let initiatorID = try! NodeID(hex: V.lsPub)
    let responderID = try! NodeID(hex: V.rsPub)

    /// The vectors' two machines after the handshake (the machine is a value: copies are independent).
    func established() -> (initiator: MachineDriver, responder: MachineDriver) {
        var initiator = V.initiator()
        var responder = V.responder()
        _ = responder.feed(initiator.machine.start()!)
        _ = initiator.feed(actTwo)
        _ = responder.feed(actThree)
        precondition(initiator.machine.isEstablished && responder.machine.isEstablished)
        return (initiator, responder)
    }

    func messages(_ random: inout SplitMix, count: Int) -> [[UInt8]] {
        (0..<count).map { i in
            switch i % 7 {
            case 0: return []
            case 1: return random.bytes(65535)
            case 2: return random.bytes(1 + random.below(16))
            default: return random.bytes(random.below(3000))
            }
        }
    }

    // MARK: Handshake fragmentation

    @Test("every split point of act one, act two and act three gives the vectors' answer once the act is whole")
    func actSplitPoints() {
        for split in 1..<Handshake.actOneLength {
            var responder = V.responder()
            #expect(responder.feed(actOne[..<split]) == [], "act one split at \(split)")
            #expect(responder.pending.count == split)
            #expect(responder.feed(actOne[split...]) == [.send(actTwo)], "act one split at \(split)")
        }
        for split in 1..<Handshake.actTwoLength {
            var initiator = V.initiator()
            _ = initiator.machine.start()
            #expect(initiator.feed(actTwo[..<split]) == [], "act two split at \(split)")
            #expect(initiator.feed(actTwo[split...]) == [.send(actThree), .handshakeCompleted(responderID)], "act two split at \(split)")
        }
        var afterActOne = V.responder()
        _ = afterActOne.feed(actOne)
        for split in 1..<Handshake.actThreeLength {
            var responder = afterActOne
            #expect(responder.feed(actThree[..<split]) == [], "act three split at \(split)")
            #expect(responder.feed(actThree[split...]) == [.handshakeCompleted(initiatorID)], "act three split at \(split)")
        }
    }

    @Test("a whole connection one byte at a time: acts, then frames across a key rotation")
    func oneByteAtATime() throws {
        var (sender, _) = established()
        let hello = Array("hello".utf8)
        var frames: [UInt8] = []
        for _ in 0..<510 { frames += try sender.seal(hello) }  // 1020 key uses: one rotation

        var responder = V.responder()
        var outputs: [MachineDriver.Output] = []
        for byte in actOne { outputs += responder.feed([byte]) }
        #expect(outputs == [.send(actTwo)])
        outputs = []
        for byte in actThree + frames { outputs += responder.feed([byte]) }
        #expect(outputs == [.handshakeCompleted(initiatorID)] + Array(repeating: .message(hello), count: 510))
        #expect(responder.pending.isEmpty && responder.end() == nil)

        var initiator = V.initiator()
        _ = initiator.machine.start()
        outputs = []
        for byte in actTwo { outputs += initiator.feed([byte]) }
        #expect(outputs == [.send(actThree), .handshakeCompleted(responderID)])
    }

    @Test("act three and the first frames in one read; act one and garbage in one read answers act one first")
    func handshakeAndFramesTogether() throws {
        var (initiator, _) = established()
        let burst = actThree + (try initiator.seal([0, 16, 0, 0, 0, 0])) + (try initiator.seal([0x80, 0x01]))
        var responder = V.responder()
        _ = responder.feed(actOne)
        #expect(responder.feed(burst) == [.handshakeCompleted(initiatorID), .message([0, 16, 0, 0, 0, 0]), .message([0x80, 0x01])])

        // Act three's bytes are all checked before anything after them is read.
        var early = V.responder()
        #expect(early.feed(actOne + [1, 2, 3]) == [.send(actTwo)])
        #expect(early.pending == [1, 2, 3])
    }

    // MARK: Frame fragmentation

    @Test("every split point of a frame, inside the 18-byte length header and MAC, in the body and in its MAC")
    func frameSplitPoints() throws {
        var (sender, receiver) = established()
        for message in [[], Array("hello".utf8), (0..<300).map { UInt8(truncatingIfNeeded: $0) }] as [[UInt8]] {
            let frame = try sender.seal(message)
            for split in 1..<frame.count {
                var copy = receiver
                #expect(copy.feed(frame[..<split]) == [], "split at \(split) of \(frame.count)")
                // The header is consumed as soon as it is whole; only the body is held after that.
                #expect(copy.pending.count == (split < 18 ? split : split - 18))
                #expect(copy.feed(frame[split...]) == [.message(message)], "split at \(split) of \(frame.count)")
                #expect(copy.pending.isEmpty)
            }
            // Every pair of split points of the short frames: three reads.
            if frame.count < 64 {
                for first in 1..<frame.count {
                    for second in first + 1..<frame.count {
                        var copy = receiver
                        #expect(copy.feed(chunks: [frame[..<first], frame[first..<second], frame[second...]]) == [.message(message)])
                    }
                }
            }
            #expect(receiver.feed(frame) == [.message(message)])
        }
    }

    @Test("many frames in one read, random splits and byte by byte yield the same messages, across key rotations")
    func manyFrames() throws {
        var random = SplitMix(state: 42)
        let sent = messages(&random, count: 1200)  // 2400 key uses: two rotations
        var (sender, receiver) = established()
        var stream: [UInt8] = []
        var prefixLength = 0
        for (i, message) in sent.enumerated() {
            stream += try sender.seal(message)
            if i == 39 { prefixLength = stream.count }
        }
        let expected = sent.map { MachineDriver.Output.message($0) }

        var whole = receiver
        #expect(whole.feed(stream) == expected)
        #expect(whole.end() == nil)

        var chunks: [ArraySlice<UInt8>] = []
        var at = 0
        while at < stream.count {
            let n = min(stream.count - at, 1 + random.below(40_000))
            chunks.append(stream[at..<at + n])
            at += n
        }
        var split = receiver
        #expect(split.feed(chunks: chunks) == expected)

        // Byte by byte over the first 40 messages (the whole ~40 MB would be slow in a debug build).
        var bytewise = receiver
        #expect(bytewise.feed(chunks: stream[..<prefixLength].indices.map { stream[$0...$0] }) == Array(expected.prefix(40)))
    }

    @Test("65535-byte messages are fine, 65536 is refused before anything is sealed")
    func limits() throws {
        var (sender, receiver) = established()
        #expect(throws: TransportError.messageTooLong(65536)) { _ = try sender.seal(Array(repeating: 0, count: 65536)) }
        let big = Array(repeating: UInt8(0xab), count: 65535)
        // The refused message used no nonce: the next frame still decrypts.
        #expect(receiver.feed(try sender.seal(big)) == [.message(big)])
    }

    @Test("sealing before the handshake or after the end is refused")
    func sealingOutsideTheSession() {
        var initiator = V.initiator()
        #expect(throws: TransportError.invalidState("cannot send a message before the handshake completes")) { _ = try initiator.seal([0, 1]) }
        var (sender, _) = established()
        _ = sender.end()
        #expect(throws: TransportError.invalidState("the connection is closed")) { _ = try sender.seal([0, 1]) }
    }

    // MARK: Failures

    @Test("a flipped bit in a frame's length, its MAC, the body or the body's MAC closes with the part named; nothing is read after")
    func badFrameMAC() throws {
        let (sender, receiver) = established()
        let message: [UInt8] = [1, 2, 3, 4, 5]
        for (offset, part) in [(0, TransportError.FramePart.length), (3, .length), (17, .length), (18, .body), (20, .body), (18 + 5 + 15, .body)] {
            var s = sender, r = receiver
            let good = try s.seal([9, 9])
            var frame = try s.seal(message)
            frame[offset] ^= 0x01
            // The good frame before the bad one is still delivered, then the connection closes.
            #expect(r.feed(good + frame) == [.message([9, 9]), .close(.badFrameMAC(part: part))], "flip at \(offset)")
            #expect(r.machine.isClosed && !r.machine.isEstablished)
            #expect(r.feed(try s.seal(message)) == [], "a closed machine ignores input")
            #expect(r.end() == nil)
        }
    }

    @Test("the wrong node id fails act one at the responder and act two at the initiator")
    func wrongNodeID() {
        let carol = try! NodeSecret(hex: String(repeating: "33", count: 32))
        var initiator = MachineDriver(.initiator(remote: carol.nodeID), try! NodeSecret(hex: V.initiatorLS))
        let wrongActOne = initiator.machine.start()!
        var responder = V.responder()
        #expect(responder.feed(wrongActOne) == [.close(.badActMAC(act: 1))])
        // The initiator, for its part, rejects a responder that is not carol.
        var imposter = MachineDriver(.responder, carol)
        guard case .send(var carolsActTwo) = imposter.feed(wrongActOne).first else { Issue.record("no act two"); return }
        carolsActTwo[49] ^= 1
        #expect(initiator.feed(carolsActTwo) == [.close(.badActMAC(act: 2))])
    }

    @Test("bytes before the initiator sent act one are a protocol error")
    func bytesBeforeStart() {
        var initiator = V.initiator()
        #expect(initiator.feed([]) == [], "an empty read is not data")
        #expect(initiator.feed([0]) == [.close(.invalidState("the peer sent data before act one was sent"))])
    }

    // MARK: End of stream

    @Test("the stream ending inside each act says which act and how many of its bytes came")
    func endMidAct() {
        var responder = V.responder()
        #expect(responder.end() == .truncated(expected: 50, got: 0, during: "act one"))
        for got in 1..<Handshake.actOneLength {
            var r = V.responder()
            _ = r.feed(actOne[..<got])
            #expect(r.end() == .truncated(expected: 50, got: got, during: "act one"))
        }
        var afterActOne = V.responder()
        _ = afterActOne.feed(actOne)
        for got in 0..<Handshake.actThreeLength {
            var r = afterActOne
            _ = r.feed(actThree[..<got])
            #expect(r.end() == .truncated(expected: 66, got: got, during: "act three"))
        }
        for got in 0..<Handshake.actTwoLength {
            var i = V.initiator()
            _ = i.machine.start()
            _ = i.feed(actTwo[..<got])
            #expect(i.end() == .truncated(expected: 50, got: got, during: "act two"))
        }
        var unstarted = V.initiator()
        #expect(unstarted.end() == nil, "nothing was sent, nothing is missing")
    }

    @Test("the stream ending inside a frame's header or body says which, and how many bytes of it came")
    func endMidFrame() throws {
        var (sender, receiver) = established()
        let frame = try sender.seal(Array(repeating: 7, count: 100))
        for got in 0..<frame.count {
            var r = receiver
            _ = r.feed(frame[..<got])
            let expected: TransportError? = switch got {
            case 0: nil
            case ..<18: .truncated(expected: 18, got: got, during: "a message header")
            default: .truncated(expected: 116, got: got - 18, during: "a message body")
            }
            #expect(r.end() == expected, "ended after \(got) bytes")
            #expect(r.machine.isClosed)
        }
        #expect(receiver.feed(frame) == [.message(Array(repeating: 7, count: 100))])
        #expect(receiver.end() == nil)
        #expect(receiver.end() == nil, "ending twice is harmless")
    }
}
