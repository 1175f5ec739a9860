import CSecp256k1

/// The BOLT 8 `Noise_XK_secp256k1_ChaChaPoly_SHA256` handshake, one act at a time, with the
/// spec's own names (`ck`, `h`, `temp_k1`..`temp_k3`, `e`, `s`, `re`, `rs`) so it can be read beside it.
///
/// The cryptography of the acts only: `BOLT8Machine` decides when each act is read or written.
public struct Handshake: Sendable {
    public static let actOneLength = 50
    public static let actTwoLength = 50
    public static let actThreeLength = 66

    static let protocolName = Array("Noise_XK_secp256k1_ChaChaPoly_SHA256".utf8)
    static let prologue = Array("lightning".utf8)

    public enum Role: Sendable { case initiator, responder }

    public let role: Role
    let ls: NodeSecret
    /// Our ephemeral secret (`e.priv`).
    let ePriv: [UInt8]
    let ePub: [UInt8]

    var ck: [UInt8]
    var h: [UInt8]
    var tempK2: [UInt8] = []
    /// The remote static key: known up front by the initiator, learned in act three by the responder.
    public private(set) var rs: NodeID?
    var re: secp256k1_pubkey?

    /// - Parameters:
    ///   - ephemeral: only for test vectors; BOLT 8 requires a fresh random key per session.
    public init(initiator ls: NodeSecret, remote rs: NodeID, ephemeral: NodeSecret? = nil) {
        self.init(role: .initiator, ls: ls, responderStatic: rs.bytes, ephemeral: ephemeral)
        self.rs = rs
    }

    public init(responder ls: NodeSecret, ephemeral: NodeSecret? = nil) {
        self.init(role: .responder, ls: ls, responderStatic: ls.nodeID.bytes, ephemeral: ephemeral)
    }

    private init(role: Role, ls: NodeSecret, responderStatic: [UInt8], ephemeral: NodeSecret?) {
        self.role = role
        self.ls = ls
        let e = ephemeral ?? NodeSecret.random()
        self.ePriv = e.bytes
        self.ePub = e.nodeID.bytes
        // Handshake state initialisation.
        var h = Crypto.sha256(Self.protocolName)
        self.ck = h
        h = Crypto.sha256(h, Self.prologue)
        // Both sides mix in the responder's static key.
        self.h = Crypto.sha256(h, responderStatic)
    }

    // MARK: Initiator

    /// Act one, sender: `-> e, es`.
    public mutating func actOne() -> [UInt8] {
        precondition(role == .initiator)
        h = Crypto.sha256(h, ePub)
        let es = Crypto.ecdh(secret: ePriv, remote: Crypto.parsePublicKey(rs!.bytes[...])!)
        let tempK1: [UInt8]
        (ck, tempK1) = Crypto.hkdf(salt: ck, ikm: es)
        let c = Crypto.encryptWithAD(tempK1, 0, h, [])
        h = Crypto.sha256(h, c)
        return [0] + ePub + c
    }

    /// Act two, receiver, then act three, sender (`<- e, ee` then `-> s, se`). Returns act three and
    /// the transport keys.
    public mutating func readActTwo(_ m: [UInt8]) throws(TransportError) -> (actThree: [UInt8], keys: TransportKeys) {
        precondition(role == .initiator)
        guard m.count == Self.actTwoLength else {
            throw .truncated(expected: Self.actTwoLength, got: m.count, during: "act two")
        }
        guard m[0] == 0 else { throw .badVersion(act: 2, version: m[0]) }
        guard let re = Crypto.parsePublicKey(m[1..<34]) else { throw .badPublicKey(act: 2) }
        let c = m[34..<50]
        h = Crypto.sha256(h, Array(m[1..<34]))
        let ee = Crypto.ecdh(secret: ePriv, remote: re)
        (ck, tempK2) = Crypto.hkdf(salt: ck, ikm: ee)
        guard Crypto.decryptWithAD(tempK2, 0, h, c) != nil else { throw .badActMAC(act: 2) }
        h = Crypto.sha256(h, Array(c))

        // Act three.
        let c3 = Crypto.encryptWithAD(tempK2, 1, h, ls.nodeID.bytes)
        h = Crypto.sha256(h, c3)
        let se = Crypto.ecdh(secret: ls.bytes, remote: re)
        let tempK3: [UInt8]
        (ck, tempK3) = Crypto.hkdf(salt: ck, ikm: se)
        let t = Crypto.encryptWithAD(tempK3, 0, h, [])
        let (sk, rk) = Crypto.hkdf(salt: ck, ikm: [])
        return ([0] + c3 + t, TransportKeys(sk: sk, rk: rk, ck: ck, remote: rs!))
    }

    // MARK: Responder

    /// Act one, receiver, then act two, sender (`-> e, es` then `<- e, ee`). Returns act two.
    public mutating func readActOne(_ m: [UInt8]) throws(TransportError) -> [UInt8] {
        precondition(role == .responder)
        guard m.count == Self.actOneLength else {
            throw .truncated(expected: Self.actOneLength, got: m.count, during: "act one")
        }
        guard m[0] == 0 else { throw .badVersion(act: 1, version: m[0]) }
        guard let re = Crypto.parsePublicKey(m[1..<34]) else { throw .badPublicKey(act: 1) }
        let c = m[34..<50]
        h = Crypto.sha256(h, Array(m[1..<34]))
        let es = Crypto.ecdh(secret: ls.bytes, remote: re)
        let tempK1: [UInt8]
        (ck, tempK1) = Crypto.hkdf(salt: ck, ikm: es)
        guard Crypto.decryptWithAD(tempK1, 0, h, c) != nil else { throw .badActMAC(act: 1) }
        h = Crypto.sha256(h, Array(c))
        self.re = re

        // Act two.
        h = Crypto.sha256(h, ePub)
        let ee = Crypto.ecdh(secret: ePriv, remote: re)
        (ck, tempK2) = Crypto.hkdf(salt: ck, ikm: ee)
        let c2 = Crypto.encryptWithAD(tempK2, 0, h, [])
        h = Crypto.sha256(h, c2)
        return [0] + ePub + c2
    }

    /// Act three, receiver (`-> s, se`). Returns the transport keys and, in them, the initiator's
    /// node id.
    public mutating func readActThree(_ m: [UInt8]) throws(TransportError) -> TransportKeys {
        precondition(role == .responder)
        guard m.count == Self.actThreeLength else {
            throw .truncated(expected: Self.actThreeLength, got: m.count, during: "act three")
        }
        guard m[0] == 0 else { throw .badVersion(act: 3, version: m[0]) }
        let c = m[1..<50]
        let t = m[50..<66]
        guard let rsBytes = Crypto.decryptWithAD(tempK2, 1, h, c) else { throw .badActCiphertext }
        guard let rsKey = Crypto.parsePublicKey(rsBytes[...]), let rs = try? NodeID(bytes: rsBytes) else {
            throw .badPublicKey(act: 3)
        }
        h = Crypto.sha256(h, Array(c))
        let se = Crypto.ecdh(secret: ePriv, remote: rsKey)
        let tempK3: [UInt8]
        (ck, tempK3) = Crypto.hkdf(salt: ck, ikm: se)
        guard Crypto.decryptWithAD(tempK3, 0, h, t) != nil else { throw .badActMAC(act: 3) }
        self.rs = rs
        let (rk, sk) = Crypto.hkdf(salt: ck, ikm: [])
        return TransportKeys(sk: sk, rk: rk, ck: ck, remote: rs)
    }
}

/// What a completed handshake yields: the sending and receiving keys, the chaining key both start
/// from (`sck = rck = ck`), and the authenticated remote node id.
public struct TransportKeys: Sendable {
    public let sk: [UInt8]
    public let rk: [UInt8]
    public let ck: [UInt8]
    public let remote: NodeID
}
