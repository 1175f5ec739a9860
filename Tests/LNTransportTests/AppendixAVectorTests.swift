import Testing
@testable import LNTransport

/// BOLT 8 Appendix A, byte for byte, through `BOLT8Machine` (the code `BOLT8Handler` runs): the
/// spec's own vectors are the independent truth here.
@Suite("BOLT 8 Appendix A through the machine")
struct AppendixAVectorTests {
    typealias V = Vectors

    func hex(_ s: String) -> [UInt8] { V.bytes(s) }

    /// The sending and receiving keys of an established machine.
    func keys(_ driver: MachineDriver) -> (sk: String, sck: String, rk: String, rck: String)? {
        guard case .established(let decryptor, nil) = driver.machine.state, let encryptor = driver.machine.encryptor else { return nil }
        return (HexString.encode(encryptor.state.k), HexString.encode(encryptor.state.ck),
                HexString.encode(decryptor.state.k), HexString.encode(decryptor.state.ck))
    }

    /// An initiator that has sent act one, checked against the vector.
    func initiatorAfterActOne() -> MachineDriver {
        var initiator = V.initiator()
        #expect(try! NodeSecret(hex: V.initiatorLS).nodeID.hex == V.lsPub)
        #expect(initiator.machine.start().map(HexString.encode) == V.actOne)
        #expect(initiator.machine.start() == nil, "act one is sent once")
        return initiator
    }

    /// A responder that has read act one and answered with act two, checked against the vector.
    func responderAfterActOne() -> MachineDriver {
        var responder = V.responder()
        #expect(try! NodeSecret(hex: V.responderLS).nodeID.hex == V.rsPub)
        #expect(responder.machine.start() == nil, "a responder sends nothing first")
        #expect(responder.feed(hex(V.actOne)) == [.send(hex(V.actTwo))])
        return responder
    }

    @Test("transport-initiator successful handshake")
    func initiatorSuccess() throws {
        var initiator = initiatorAfterActOne()
        #expect(initiator.feed(hex(V.actTwo)) == [.send(hex(V.actThree)), .handshakeCompleted(try NodeID(hex: V.rsPub))])
        let k = try #require(keys(initiator))
        #expect(k.sk == V.sk && k.rk == V.rk && k.sck == V.ck && k.rck == V.ck)
        #expect(initiator.machine.isEstablished)
    }

    @Test("transport-initiator act2 failures", arguments: [
        ("0102466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
         TransportError.badVersion(act: 2, version: 1)),  // ACT2_BAD_VERSION 1
        ("0004466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
         TransportError.badPublicKey(act: 2)),  // ACT2_BAD_PUBKEY
        ("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730af",
         TransportError.badActMAC(act: 2)),  // ACT2_BAD_TAG
    ])
    func initiatorFailures(input: String, expected: TransportError) {
        var initiator = initiatorAfterActOne()
        #expect(initiator.feed(hex(input)) == [.close(expected)])
        #expect(initiator.machine.isClosed && !initiator.machine.isEstablished)
        #expect(initiator.end() == nil, "the failure was already reported")
    }

    @Test("transport-initiator act2 short read (ACT2_READ_FAILED)")
    func initiatorShortRead() {
        var initiator = initiatorAfterActOne()
        #expect(initiator.feed(hex(V.actTwo).dropLast()) == [])
        #expect(initiator.end() == .truncated(expected: 50, got: 49, during: "act two"))
    }

    @Test("transport-responder successful handshake")
    func responderSuccess() throws {
        var responder = responderAfterActOne()
        #expect(responder.feed(hex(V.actThree)) == [.handshakeCompleted(try NodeID(hex: V.lsPub))])
        let k = try #require(keys(responder))
        // The responder's rk is the initiator's sk, and vice versa.
        #expect(k.rk == V.sk && k.sk == V.rk && k.sck == V.ck && k.rck == V.ck)
    }

    @Test("transport-responder act1 failures", arguments: [
        ("01036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
         TransportError.badVersion(act: 1, version: 1)),  // ACT1_BAD_VERSION
        ("00046360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
         TransportError.badPublicKey(act: 1)),  // ACT1_BAD_PUBKEY
        ("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6b",
         TransportError.badActMAC(act: 1)),  // ACT1_BAD_TAG
    ])
    func responderActOneFailures(input: String, expected: TransportError) {
        var responder = V.responder()
        #expect(responder.feed(hex(input)) == [.close(expected)])
        #expect(responder.end() == nil)
    }

    @Test("transport-responder act1 short read (ACT1_READ_FAILED)")
    func responderActOneShortRead() {
        var responder = V.responder()
        #expect(responder.feed(hex(V.actOne).dropLast()) == [])
        #expect(responder.end() == .truncated(expected: 50, got: 49, during: "act one"))
    }

    @Test("transport-responder act3 failures", arguments: [
        ("01b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba",
         TransportError.badVersion(act: 3, version: 1)),  // ACT3_BAD_VERSION 1
        ("00c9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba",
         TransportError.badActCiphertext),  // ACT3_BAD_CIPHERTEXT
        ("00bfe3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa2235536ad09a8ee351870c2bb7f78b754a26c6cef79a98d25139c856d7efd252c2ae73c",
         TransportError.badPublicKey(act: 3)),  // ACT3_BAD_PUBKEY
        ("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139bb",
         TransportError.badActMAC(act: 3)),  // ACT3_BAD_TAG
    ])
    func responderActThreeFailures(input: String, expected: TransportError) {
        var responder = responderAfterActOne()
        #expect(responder.feed(hex(input)) == [.close(expected)])
        #expect(responder.end() == nil)
    }

    @Test("transport-responder act3 short read (ACT3_READ_FAILED)")
    func responderActThreeShortRead() {
        var responder = responderAfterActOne()
        #expect(responder.feed(hex(V.actThree).dropLast()) == [])
        #expect(responder.end() == .truncated(expected: 66, got: 65, during: "act three"))
    }

    @Test("transport-message test: 1002 'hello's, outputs 0, 1, 500, 501, 1000, 1001; the responder reads them all")
    func messageEncryption() throws {
        var initiator = initiatorAfterActOne()
        _ = initiator.feed(hex(V.actTwo))
        var responder = responderAfterActOne()
        _ = responder.feed(hex(V.actThree))
        let hello = Array("hello".utf8)
        var stream: [UInt8] = []
        for i in 0...1001 {
            let frame = try initiator.seal(hello)
            if let want = V.helloFrames[i] {
                #expect(HexString.encode(frame) == want, "message \(i)")
            }
            stream += frame
        }
        // The responder decrypts the same stream (its rk is the initiator's sk), rotating its key
        // at the same points.
        #expect(responder.feed(stream) == Array(repeating: .message(hello), count: 1002))
        #expect(responder.end() == nil)
    }
}
