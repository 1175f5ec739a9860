import Testing
@testable import LNTransport

/// The streaming state machine: fragmentation must not matter, and every failure is a typed error.
@Suite("TransportSession")
struct TransportSessionTests {
    /// A deterministic generator (SplitMix64) so failures reproduce.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E3779B97F4A7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
            z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
    }

    let alice = try! NodeSecret(hex: String(repeating: "11", count: 32))
    let bob = try! NodeSecret(hex: String(repeating: "21", count: 32))

    /// Runs a full handshake between two sessions and returns them established. Fixed ephemeral keys
    /// make every pair derive the same session keys, so a stream from one pair decodes in another.
    func pair() throws -> (TransportSession, TransportSession) {
        var (initiator, actOne) = TransportSession.initiator(local: alice, remote: bob.nodeID,
                                                             ephemeral: try NodeSecret(hex: String(repeating: "12", count: 32)))
        var responder = TransportSession.responder(local: bob, ephemeral: try NodeSecret(hex: String(repeating: "22", count: 32)))
        let r1 = try responder.receive(actOne)
        guard case .send(let actTwo) = r1.first else { Issue.record("no act two"); throw TransportError.invalidState("") }
        let i1 = try initiator.receive(actTwo)
        #expect(i1.count == 2)
        guard case .send(let actThree) = i1[0], case .handshakeCompleted(let remote) = i1[1] else { throw TransportError.invalidState("") }
        #expect(remote == bob.nodeID)
        let r2 = try responder.receive(actThree)
        #expect(r2 == [.handshakeCompleted(alice.nodeID)])
        return (initiator, responder)
    }

    func messages(_ random: inout Random, count: Int) -> [[UInt8]] {
        (0..<count).map { i in
            switch i % 7 {
            case 0: return []
            case 1: return random.bytes(65535)
            case 2: return random.bytes(1 + random.below(16))
            default: return random.bytes(random.below(3000))
            }
        }
    }

    @Test("any fragmentation yields the same messages, across key rotations")
    func fragmentation() throws {
        var random = Random(state: 42)
        let sent = messages(&random, count: 1200)  // 2400 key uses: two rotations
        var (sender, _) = try pair()
        var stream: [UInt8] = []
        for message in sent { stream += try sender.encrypt(message) }

        func decode(_ chunks: [ArraySlice<UInt8>]) throws -> [[UInt8]] {
            var (_, receiver) = try pair()
            var got: [[UInt8]] = []
            for chunk in chunks {
                for event in try receiver.receive(chunk) {
                    if case .message(let m) = event { got.append(m) }
                }
            }
            try receiver.finish()
            return got
        }

        // All at once.
        #expect(try decode([stream[...]]) == sent)
        // Random splits.
        var chunks: [ArraySlice<UInt8>] = []
        var at = 0
        while at < stream.count {
            let n = min(stream.count - at, 1 + random.below(40_000))
            chunks.append(stream[at..<at + n])
            at += n
        }
        #expect(try decode(chunks) == sent)
        // One byte at a time, over a prefix (a full pass over ~40 MB byte by byte would be slow in debug).
        let prefixMessages = 40
        let prefixLength = try { () -> Int in
            var (s, _) = try pair()
            return try sent.prefix(prefixMessages).reduce(0) { $0 + (try s.encrypt($1)).count }
        }()
        #expect(try decode(stream[..<prefixLength].indices.map { stream[$0...$0] }) == Array(sent.prefix(prefixMessages)))
    }

    @Test("act three and the first frames in one read")
    func handshakeAndFramesTogether() throws {
        var (initiator, actOne) = TransportSession.initiator(local: alice, remote: bob.nodeID)
        var responder = TransportSession.responder(local: bob)
        guard case .send(let actTwo) = try responder.receive(actOne).first else { return }
        guard case .send(let actThree) = try initiator.receive(actTwo).first else { return }
        let burst = actThree + (try initiator.encrypt([0, 16, 0, 0, 0, 0])) + (try initiator.encrypt([0x80, 0x01]))
        let events = try responder.receive(burst)
        #expect(events == [.handshakeCompleted(alice.nodeID), .message([0, 16, 0, 0, 0, 0]), .message([0x80, 0x01])])
    }

    @Test("a flipped bit in a frame's length or body is a MAC failure, and the session stays dead")
    func badFrameMAC() throws {
        for (offset, part) in [(3, TransportError.FramePart.length), (20, .body), (18 + 5 + 15, .body)] {
            var (sender, receiver) = try pair()
            var frame = try sender.encrypt([1, 2, 3, 4, 5])
            frame[offset] ^= 0x01
            #expect(throws: TransportError.badFrameMAC(part: part)) { _ = try receiver.receive(frame) }
            #expect(throws: TransportError.self) { _ = try receiver.receive([0]) }
        }
    }

    @Test("a stream that ends mid-frame or mid-handshake is truncated")
    func truncation() throws {
        var (sender, receiver) = try pair()
        let frame = try sender.encrypt(Array(repeating: 7, count: 100))
        _ = try receiver.receive(frame.prefix(10))
        #expect(throws: TransportError.truncated(expected: 18, got: 10, during: "a message header")) { try receiver.finish() }

        var (sender2, receiver2) = try pair()
        let frame2 = try sender2.encrypt(Array(repeating: 7, count: 100))
        _ = try receiver2.receive(frame2.prefix(50))
        #expect(throws: TransportError.truncated(expected: 116, got: 32, during: "a message body")) { try receiver2.finish() }

        var responder = TransportSession.responder(local: bob)
        _ = try responder.receive([0, 1, 2])
        #expect(throws: TransportError.truncated(expected: 50, got: 3, during: "act one")) { try responder.finish() }

        var (clean, _) = try pair()
        try clean.finish()
    }

    @Test("the wrong node id fails act one at the responder and act two at the initiator")
    func wrongNodeID() throws {
        let carol = try NodeSecret(hex: String(repeating: "33", count: 32))
        var (initiator, actOne) = TransportSession.initiator(local: alice, remote: carol.nodeID)
        var responder = TransportSession.responder(local: bob)
        #expect(throws: TransportError.badActMAC(act: 1)) { _ = try responder.receive(actOne) }
        // The initiator, for its part, rejects a responder that is not carol.
        var honest = TransportSession.responder(local: carol)
        guard case .send(var actTwo) = try honest.receive(actOne).first else { return }
        actTwo[49] ^= 1
        #expect(throws: TransportError.badActMAC(act: 2)) { _ = try initiator.receive(actTwo) }
    }

    @Test("messages over 65535 bytes are refused; 65535 is fine; sending before the handshake is refused")
    func limits() throws {
        var (sender, receiver) = try pair()
        #expect(throws: TransportError.messageTooLong(65536)) { _ = try sender.encrypt(Array(repeating: 0, count: 65536)) }
        let big = Array(repeating: UInt8(0xab), count: 65535)
        #expect(try receiver.receive(try sender.encrypt(big)) == [.message(big)])
        var (early, _) = TransportSession.initiator(local: alice, remote: bob.nodeID)
        #expect(throws: TransportError.self) { _ = try early.encrypt([0, 1]) }
    }
}
