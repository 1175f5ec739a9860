/// One direction's cipher state after the handshake: key `k` (`sk` or `rk`), its nonce counter `n`
/// (`sn` or `rn`) and chaining key `ck` (`sck` or `rck`), rotated after every 1000 uses.
public struct CipherState: Sendable {
    /// BOLT 8: a key is rotated once its nonce reaches 1000, i.e. every 500 messages.
    public static let rotationInterval: UInt64 = 1000

    private(set) var k: [UInt8]
    private(set) var ck: [UInt8]
    /// The nonce of the next operation.
    public private(set) var n: UInt64 = 0

    init(k: [UInt8], ck: [UInt8]) {
        precondition(k.count == 32 && ck.count == 32)
        self.k = k
        self.ck = ck
    }

    /// Encrypts `count` bytes at `plaintext` into `output` (`count + 16` bytes; may be the same
    /// memory), with empty associated data.
    @inline(__always)
    mutating func encrypt(_ plaintext: UnsafeRawPointer?, count: Int, into output: UnsafeMutableRawPointer) {
        k.withUnsafeBytes { key in
            Crypto.encrypt(key: key.baseAddress!, nonce: n, ad: nil, plaintext: plaintext, count: count, output: output)
        }
        advance()
    }

    /// Decrypts `count` bytes (ciphertext plus its 16-byte tag) in place. False if the MAC fails.
    @inline(__always)
    mutating func decrypt(_ ciphertext: UnsafeMutableRawPointer, count: Int) -> Bool {
        let ok = k.withUnsafeBytes { key in
            Crypto.decrypt(key: key.baseAddress!, nonce: n, ad: nil, ciphertext: ciphertext, count: count, output: ciphertext)
        }
        advance()
        return ok
    }

    @inline(__always)
    private mutating func advance() {
        n += 1
        if n == Self.rotationInterval {
            // ck', k' = HKDF(ck, k)
            (ck, k) = Crypto.hkdf(salt: ck, ikm: k)
            n = 0
        }
    }
}

/// Encrypts outgoing Lightning messages into BOLT 8 frames: `lc` (18 bytes: the 2-byte length and
/// its MAC), then `c` (the message and its MAC).
public struct MessageEncryptor: Sendable {
    /// Bytes a frame adds to a message: 18 for the encrypted length, 16 for the body's MAC.
    public static let overhead = 34
    /// BOLT 8's limit on a message's length.
    public static let maximumMessageLength = 65535

    var state: CipherState

    public init(keys: TransportKeys) {
        state = CipherState(k: keys.sk, ck: keys.ck)
    }

    /// Writes the frame for `message` into `output`, which must hold `message.count + overhead`
    /// bytes. Returns the frame's length.
    public mutating func seal(_ message: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(TransportError) -> Int {
        let length = message.count
        guard length <= Self.maximumMessageLength else { throw .messageTooLong(length) }
        precondition(output.count >= length + Self.overhead, "output too small for the frame")
        var prefix = UInt16(length).bigEndian
        withUnsafeBytes(of: &prefix) { l in
            state.encrypt(l.baseAddress, count: 2, into: output.baseAddress!)
        }
        state.encrypt(message.baseAddress, count: length, into: output.baseAddress! + 18)
        return length + Self.overhead
    }
}

/// Decrypts incoming BOLT 8 frames in place: first the 18-byte length header, then the body.
public struct MessageDecryptor: Sendable {
    /// The encrypted length prefix: 2 bytes and a 16-byte MAC.
    public static let headerLength = 18
    public static let macLength = 16

    var state: CipherState

    public init(keys: TransportKeys) {
        state = CipherState(k: keys.rk, ck: keys.ck)
    }

    /// Decrypts an 18-byte header (in place) and returns the length of the message that follows;
    /// `length + 16` bytes of body come next.
    public mutating func openLength(_ header: UnsafeMutableRawBufferPointer) throws(TransportError) -> Int {
        precondition(header.count == Self.headerLength)
        guard state.decrypt(header.baseAddress!, count: Self.headerLength) else {
            throw .badFrameMAC(part: .length)
        }
        return Int(header[0]) << 8 | Int(header[1])
    }

    /// Decrypts a body (message + 16-byte MAC) in place; afterwards its first `count - 16` bytes are
    /// the message.
    public mutating func openBody(_ body: UnsafeMutableRawBufferPointer) throws(TransportError) {
        precondition(body.count >= Self.macLength)
        guard state.decrypt(body.baseAddress!, count: body.count) else {
            throw .badFrameMAC(part: .body)
        }
    }
}
