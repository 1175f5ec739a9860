import Testing
@testable import LNTransport

/// BOLT 8 Appendix A, byte for byte: the spec's own vectors are the independent truth here.
@Suite("BOLT 8 Appendix A")
struct AppendixAVectorTests {
    // Initiator side of the vectors.
    static let initiatorLS = "1111111111111111111111111111111111111111111111111111111111111111"
    static let initiatorE = "1212121212121212121212121212121212121212121212121212121212121212"
    static let responderLS = "2121212121212121212121212121212121212121212121212121212121212121"
    static let responderE = "2222222222222222222222222222222222222222222222222222222222222222"
    static let rsPub = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7"
    static let lsPub = "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa"

    static let actOne = "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a"
    static let actTwo = "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"
    static let actThree = "00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba"
    static let sk = "969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9"
    static let rk = "bb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442"
    static let ck = "919219dbb2920afa8db80f9a51787a840bcf111ed8d588caf9ab4be716e42b01"

    func hex(_ s: String) -> [UInt8] { HexCoding.decode(s)! }

    func initiator() throws -> Handshake {
        let ls = try NodeSecret(hex: Self.initiatorLS)
        #expect(ls.nodeID.hex == Self.lsPub)
        var handshake = Handshake(initiator: ls, remote: try NodeID(hex: Self.rsPub), ephemeral: try NodeSecret(hex: Self.initiatorE))
        #expect(HexCoding.encode(handshake.actOne()) == Self.actOne)
        return handshake
    }

    func responderAfterActOne() throws -> Handshake {
        let ls = try NodeSecret(hex: Self.responderLS)
        #expect(ls.nodeID.hex == Self.rsPub)
        var handshake = Handshake(responder: ls, ephemeral: try NodeSecret(hex: Self.responderE))
        #expect(HexCoding.encode(try handshake.readActOne(hex(Self.actOne))) == Self.actTwo)
        return handshake
    }

    @Test("transport-initiator successful handshake")
    func initiatorSuccess() throws {
        var handshake = try initiator()
        let (actThree, keys) = try handshake.readActTwo(hex(Self.actTwo))
        #expect(HexCoding.encode(actThree) == Self.actThree)
        #expect(HexCoding.encode(keys.sk) == Self.sk)
        #expect(HexCoding.encode(keys.rk) == Self.rk)
        #expect(HexCoding.encode(keys.ck) == Self.ck)
    }

    @Test("transport-initiator act2 failures", arguments: [
        ("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730",
         TransportError.truncated(expected: 50, got: 49, during: "act two")),  // ACT2_READ_FAILED
        ("0102466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
         TransportError.badVersion(act: 2, version: 1)),  // ACT2_BAD_VERSION 1
        ("0004466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
         TransportError.badPublicKey(act: 2)),  // ACT2_BAD_PUBKEY
        ("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730af",
         TransportError.badActMAC(act: 2)),  // ACT2_BAD_TAG
    ])
    func initiatorFailures(input: String, expected: TransportError) throws {
        var handshake = try initiator()
        #expect(throws: expected) { _ = try handshake.readActTwo(hex(input)) }
    }

    @Test("transport-responder successful handshake")
    func responderSuccess() throws {
        var handshake = try responderAfterActOne()
        let keys = try handshake.readActThree(hex(Self.actThree))
        // The responder's rk is the initiator's sk, and vice versa.
        #expect(HexCoding.encode(keys.rk) == Self.sk)
        #expect(HexCoding.encode(keys.sk) == Self.rk)
        #expect(keys.remote.hex == Self.lsPub)
    }

    @Test("transport-responder act1 failures", arguments: [
        ("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c",
         TransportError.truncated(expected: 50, got: 49, during: "act one")),  // ACT1_READ_FAILED
        ("01036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
         TransportError.badVersion(act: 1, version: 1)),  // ACT1_BAD_VERSION
        ("00046360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
         TransportError.badPublicKey(act: 1)),  // ACT1_BAD_PUBKEY
        ("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6b",
         TransportError.badActMAC(act: 1)),  // ACT1_BAD_TAG
    ])
    func responderActOneFailures(input: String, expected: TransportError) throws {
        var handshake = Handshake(responder: try NodeSecret(hex: Self.responderLS), ephemeral: try NodeSecret(hex: Self.responderE))
        #expect(throws: expected) { _ = try handshake.readActOne(hex(input)) }
    }

    @Test("transport-responder act3 failures", arguments: [
        ("01b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba",
         TransportError.badVersion(act: 3, version: 1)),  // ACT3_BAD_VERSION 1
        ("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139",
         TransportError.truncated(expected: 66, got: 65, during: "act three")),  // ACT3_READ_FAILED
        ("00c9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba",
         TransportError.badActCiphertext),  // ACT3_BAD_CIPHERTEXT
        ("00bfe3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa2235536ad09a8ee351870c2bb7f78b754a26c6cef79a98d25139c856d7efd252c2ae73c",
         TransportError.badPublicKey(act: 3)),  // ACT3_BAD_PUBKEY
        ("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139bb",
         TransportError.badActMAC(act: 3)),  // ACT3_BAD_TAG
    ])
    func responderActThreeFailures(input: String, expected: TransportError) throws {
        var handshake = try responderAfterActOne()
        #expect(throws: expected) { _ = try handshake.readActThree(hex(input)) }
    }

    @Test("transport-message test: 1001 'hello's, outputs 0, 1, 500, 501, 1000, 1001")
    func messageEncryption() throws {
        var handshake = try initiator()
        let (_, keys) = try handshake.readActTwo(hex(Self.actTwo))
        var encryptor = MessageEncryptor(keys: keys)
        let expected: [Int: String] = [
            0: "cf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95",
            1: "72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1",
            500: "178cb9d7387190fa34db9c2d50027d21793c9bc2d40b1e14dcf30ebeeeb220f48364f7a4c68bf8",
            501: "1b186c57d44eb6de4c057c49940d79bb838a145cb528d6e8fd26dbe50a60ca2c104b56b60e45bd",
            1000: "4a2f3cc3b5e78ddb83dcb426d9863d9d9a723b0337c89dd0b005d89f8d3c05c52b76b29b740f09",
            1001: "2ecd8c8a5629d0d02ab457a0fdd0f7b90a192cd46be5ecb6ca570bfc5e268338b1a16cf4ef2d36",
        ]
        // The responder decrypts the same stream: its rk equals the initiator's sk.
        var responder = try responderAfterActOne()
        var decryptor = MessageDecryptor(keys: try responder.readActThree(hex(Self.actThree)))
        let hello = Array("hello".utf8)
        for i in 0...1001 {
            var frame = try encryptor.seal(hello)
            if let want = expected[i] {
                #expect(HexCoding.encode(frame) == want, "message \(i)")
            }
            try frame.withUnsafeMutableBytes { bytes in
                let length = try decryptor.openLength(UnsafeMutableRawBufferPointer(rebasing: bytes[0..<18]))
                #expect(length == 5)
                try decryptor.openBody(UnsafeMutableRawBufferPointer(rebasing: bytes[18...]))
            }
            #expect(Array(frame[18..<23]) == hello)
        }
    }
}
