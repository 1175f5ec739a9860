import CSecp256k1
import CSodium

/// Thin wrappers over libsodium and libsecp256k1: every cryptographic operation of BOLT 8 goes
/// through here, so the protocol code reads like the spec and no primitive is written by hand.
enum Crypto {
    /// libsodium must be initialised before first use; `sodium_init` is idempotent and thread-safe.
    static let sodiumReady: Bool = sodium_init() >= 0

    /// One context for the process: creating one is expensive, using one is thread-safe.
    nonisolated(unsafe) static let secp: OpaquePointer = {
        precondition(sodiumReady, "libsodium failed to initialise")
        let context = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY))!
        // Randomising the context blinds its precomputed tables against side channels.
        var seed = [UInt8](repeating: 0, count: 32)
        randombytes_buf(&seed, 32)
        _ = secp256k1_context_randomize(context, seed)
        sodium_memzero(&seed, 32)
        return context
    }()

    // MARK: Hashes

    static func sha256(_ parts: [UInt8]...) -> [UInt8] {
        _ = sodiumReady
        var state = crypto_hash_sha256_state()
        crypto_hash_sha256_init(&state)
        for part in parts {
            crypto_hash_sha256_update(&state, part, UInt64(part.count))
        }
        var out = [UInt8](repeating: 0, count: 32)
        crypto_hash_sha256_final(&state, &out)
        return out
    }

    static func hmacSHA256(key: [UInt8], _ parts: [UInt8]...) -> [UInt8] {
        _ = sodiumReady
        var state = crypto_auth_hmacsha256_state()
        crypto_auth_hmacsha256_init(&state, key, key.count)
        for part in parts {
            crypto_auth_hmacsha256_update(&state, part, UInt64(part.count))
        }
        var out = [UInt8](repeating: 0, count: 32)
        crypto_auth_hmacsha256_final(&state, &out)
        return out
    }

    /// `HKDF(salt, ikm)` as BOLT 8 uses it (RFC 5869, empty info, 64 bytes), split into two keys.
    static func hkdf(salt: [UInt8], ikm: [UInt8]) -> ([UInt8], [UInt8]) {
        let prk = hmacSHA256(key: salt, ikm)
        let t1 = hmacSHA256(key: prk, [1])
        let t2 = hmacSHA256(key: prk, t1, [2])
        return (t1, t2)
    }

    // MARK: ChaCha20-Poly1305 (IETF)

    /// `encryptWithAD(k, n, ad, plaintext)` into `output` (plaintext.count + 16 bytes).
    /// `output` may be the same memory as `plaintext` (libsodium supports in-place operation).
    @inline(__always)
    static func encrypt(key: UnsafeRawPointer, nonce n: UInt64, ad: UnsafeRawBufferPointer?,
                        plaintext: UnsafeRawPointer?, count: Int, output: UnsafeMutableRawPointer) {
        var npub = NonceBytes(n)
        _ = withUnsafeBytes(of: &npub) { npubBytes in
            crypto_aead_chacha20poly1305_ietf_encrypt(
                output.assumingMemoryBound(to: UInt8.self), nil,
                plaintext?.assumingMemoryBound(to: UInt8.self), UInt64(count),
                ad?.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad?.count ?? 0),
                nil, npubBytes.baseAddress!.assumingMemoryBound(to: UInt8.self),
                key.assumingMemoryBound(to: UInt8.self))
        }
    }

    /// `decryptWithAD(k, n, ad, ciphertext)`: `count` includes the 16-byte tag; writes
    /// `count - 16` bytes to `output` (which may equal `ciphertext`). False when the MAC fails.
    @inline(__always)
    static func decrypt(key: UnsafeRawPointer, nonce n: UInt64, ad: UnsafeRawBufferPointer?,
                        ciphertext: UnsafeRawPointer, count: Int, output: UnsafeMutableRawPointer?) -> Bool {
        var npub = NonceBytes(n)
        return withUnsafeBytes(of: &npub) { npubBytes in
            crypto_aead_chacha20poly1305_ietf_decrypt(
                output?.assumingMemoryBound(to: UInt8.self), nil, nil,
                ciphertext.assumingMemoryBound(to: UInt8.self), UInt64(count),
                ad?.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad?.count ?? 0),
                npubBytes.baseAddress!.assumingMemoryBound(to: UInt8.self),
                key.assumingMemoryBound(to: UInt8.self)) == 0
        }
    }

    // [UInt8] conveniences for the handshake, where a few allocations per connection do not matter.

    static func encryptWithAD(_ k: [UInt8], _ n: UInt64, _ ad: [UInt8], _ plaintext: [UInt8]) -> [UInt8] {
        _ = sodiumReady
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        k.withUnsafeBytes { key in
            ad.withUnsafeBytes { adBytes in
                plaintext.withUnsafeBytes { p in
                    out.withUnsafeMutableBytes { o in
                        encrypt(key: key.baseAddress!, nonce: n, ad: adBytes, plaintext: p.baseAddress, count: p.count, output: o.baseAddress!)
                    }
                }
            }
        }
        return out
    }

    static func decryptWithAD(_ k: [UInt8], _ n: UInt64, _ ad: [UInt8], _ ciphertext: ArraySlice<UInt8>) -> [UInt8]? {
        _ = sodiumReady
        guard ciphertext.count >= 16 else { return nil }
        var out = [UInt8](repeating: 0, count: ciphertext.count - 16)
        let ok = k.withUnsafeBytes { key in
            ad.withUnsafeBytes { adBytes in
                ciphertext.withUnsafeBytes { c in
                    out.withUnsafeMutableBytes { o in
                        decrypt(key: key.baseAddress!, nonce: n, ad: adBytes, ciphertext: c.baseAddress!, count: c.count, output: o.baseAddress)
                    }
                }
            }
        }
        return ok ? out : nil
    }

    // MARK: secp256k1

    static func isValidSecret(_ secret: [UInt8]) -> Bool {
        secret.count == 32 && secp256k1_ec_seckey_verify(secp, secret) == 1
    }

    /// The compressed public key of a valid secret.
    static func publicKey(of secret: [UInt8]) -> [UInt8] {
        var pubkey = secp256k1_pubkey()
        precondition(secp256k1_ec_pubkey_create(secp, &pubkey, secret) == 1, "secret was validated")
        return serialize(pubkey)
    }

    static func parsePublicKey(_ bytes: ArraySlice<UInt8>) -> secp256k1_pubkey? {
        guard bytes.count == 33 else { return nil }
        var pubkey = secp256k1_pubkey()
        let ok = bytes.withUnsafeBufferPointer { secp256k1_ec_pubkey_parse(secp, &pubkey, $0.baseAddress!, 33) }
        return ok == 1 ? pubkey : nil
    }

    static func serialize(_ pubkey: secp256k1_pubkey) -> [UInt8] {
        var key = pubkey
        var out = [UInt8](repeating: 0, count: 33)
        var length = 33
        secp256k1_ec_pubkey_serialize(secp, &out, &length, &key, UInt32(SECP256K1_EC_COMPRESSED))
        return out
    }

    /// `ECDH(k, rk)`: SHA-256 of the compressed shared point, which is exactly libsecp256k1's
    /// default ECDH hash function.
    static func ecdh(secret: [UInt8], remote: secp256k1_pubkey) -> [UInt8] {
        var key = remote
        var out = [UInt8](repeating: 0, count: 32)
        precondition(secp256k1_ecdh(secp, &out, &key, secret, nil, nil) == 1, "valid secret and point")
        return out
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        _ = sodiumReady
        var out = [UInt8](repeating: 0, count: count)
        randombytes_buf(&out, count)
        return out
    }
}

/// The 12-byte ChaCha20-Poly1305 nonce, laid out as BOLT 8 requires: 4 zero bytes, then the 64-bit
/// counter little-endian (Noise's convention, unlike the rest of Lightning).
struct NonceBytes {
    var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    @inline(__always)
    init(_ n: UInt64) {
        bytes = (0, 0, 0, 0,
                 UInt8(truncatingIfNeeded: n), UInt8(truncatingIfNeeded: n >> 8),
                 UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 24),
                 UInt8(truncatingIfNeeded: n >> 32), UInt8(truncatingIfNeeded: n >> 40),
                 UInt8(truncatingIfNeeded: n >> 48), UInt8(truncatingIfNeeded: n >> 56))
    }
}
