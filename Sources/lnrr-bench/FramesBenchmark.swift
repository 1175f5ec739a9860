// lnrr-bench group "frames" (main.swift runs the groups; Benchmark.swift has the method).
import CSodium
import Foundation
import LNTransport

// MARK: 1. Frame encrypt + decrypt vs raw libsodium doing the same two AEAD operations each way.

func frameBenchmarks(results: Results) throws {
    _ = sodium_init()
    let alice = try NodeSecret(hex: String(repeating: "11", count: 32))
    let bob = try NodeSecret(hex: String(repeating: "21", count: 32))
    var initiator = Handshake(initiator: alice, remote: bob.nodeID)
    var responder = Handshake(responder: bob)
    let actTwo = try responder.readActOne(initiator.actOne())
    let (actThree, keysA) = try initiator.readActTwo(actTwo)
    let keysB = try responder.readActThree(actThree)

    for size in [32, 256, 1024, 65535] {
        let message = [UInt8](repeating: 0x5a, count: size)
        var frame = [UInt8](repeating: 0, count: size + MessageEncryptor.overhead)
        var encryptor = MessageEncryptor(keys: keysA)
        var decryptor = MessageDecryptor(keys: keysB)
        let batch = max(1, 4_000_000 / (size + 64))
        let lnrrRate = rate(batch: batch) {
            message.withUnsafeBytes { m in
                frame.withUnsafeMutableBytes { f in
                    _ = try! encryptor.seal(m, into: f)
                    _ = try! decryptor.openLength(UnsafeMutableRawBufferPointer(rebasing: f[0..<18]))
                    try! decryptor.openBody(UnsafeMutableRawBufferPointer(rebasing: f[18...]))
                }
            }
        }
        // The limit: libsodium's ChaCha20-Poly1305 on the same bytes, no lnrr code around it.
        let key = [UInt8](repeating: 7, count: 32)
        var nonce = [UInt8](repeating: 0, count: 12)
        var scratch = [UInt8](repeating: 0, count: size + 16)
        var lengthBox = [UInt8](repeating: 0, count: 18)
        let two: [UInt8] = [0, 0]
        let rawRate = rate(batch: batch) {
            nonce[4] &+= 1
            crypto_aead_chacha20poly1305_ietf_encrypt(&lengthBox, nil, two, 2, nil, 0, nil, nonce, key)
            crypto_aead_chacha20poly1305_ietf_encrypt(&scratch, nil, message, UInt64(size), nil, 0, nil, nonce, key)
            // Checked, so the baseline cannot be measuring decryptions that fail early on the MAC.
            let lengthOK = crypto_aead_chacha20poly1305_ietf_decrypt(&lengthBox, nil, nil, lengthBox, 18, nil, 0, nonce, key)
            let bodyOK = crypto_aead_chacha20poly1305_ietf_decrypt(&scratch, nil, nil, scratch, UInt64(size + 16), nil, 0, nonce, key)
            precondition(lengthOK == 0 && bodyOK == 0, "the baseline's AEAD round trip failed")
        }
        results.add(Row(name: "frame encrypt+decrypt, \(size) B", value: lnrrRate, unit: "msg/s",
                   baselineName: "raw libsodium, same 4 AEAD ops", baseline: rawRate, target: ">= 0.90"))
    }
}

/// `lnrr-bench frames`.
struct FramesBenchmark: Benchmark {
    let name = "frames"

    func run(results: Results) async throws {
        try frameBenchmarks(results: results)
    }
}
