// lnrr-bench group "handshake" (main.swift runs the groups; Benchmark.swift has the method).
import CSecp256k1
import CSodium
import Foundation
import LNTransport

// MARK: 2. Handshakes vs the elliptic-curve work they cannot avoid.

func handshakeBenchmark(results: Results) throws {
    let alice = try NodeSecret(hex: String(repeating: "11", count: 32))
    let bob = try NodeSecret(hex: String(repeating: "21", count: 32))
    let lnrrRate = rate(batch: 50) {
        var initiator = Handshake(initiator: alice, remote: bob.nodeID)
        var responder = Handshake(responder: bob)
        let actTwo = try! responder.readActOne(initiator.actOne())
        let (actThree, _) = try! initiator.readActTwo(actTwo)
        _ = try! responder.readActThree(actThree)
    }
    // Per handshake: two ephemeral keys (random + pubkey), six ECDHs, three point parses.
    let context = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY))!
    var seckey = [UInt8](repeating: 0x42, count: 32)
    var pubkey = secp256k1_pubkey()
    _ = secp256k1_ec_pubkey_create(context, &pubkey, seckey)
    var serialized = [UInt8](repeating: 0, count: 33)
    var length = 33
    _ = secp256k1_ec_pubkey_serialize(context, &serialized, &length, &pubkey, UInt32(SECP256K1_EC_COMPRESSED))
    var out = [UInt8](repeating: 0, count: 32)
    let ecRate = rate(batch: 50) {
        for _ in 0..<2 {
            randombytes_buf(&seckey, 32)
            _ = secp256k1_ec_seckey_verify(context, seckey)
            _ = secp256k1_ec_pubkey_create(context, &pubkey, seckey)
            _ = secp256k1_ec_pubkey_serialize(context, &serialized, &length, &pubkey, UInt32(SECP256K1_EC_COMPRESSED))
        }
        for _ in 0..<3 { _ = secp256k1_ec_pubkey_parse(context, &pubkey, serialized, 33) }
        for _ in 0..<6 { _ = secp256k1_ecdh(context, &out, &pubkey, seckey, nil, nil) }
    }
    results.add(Row(name: "handshakes (both roles, one process)", value: lnrrRate, unit: "hs/s",
               baselineName: "EC work alone (2 keygen, 6 ECDH)", baseline: ecRate, target: ">= 0.80"))
}

/// `lnrr-bench handshake`.
struct HandshakeBenchmark: Benchmark {
    let name = "handshake"

    func run(results: Results) async throws {
        try handshakeBenchmark(results: results)
    }
}
