@testable import LNWire

/// Hand-assembled messages for the phase tests, field by field from the BOLT 1/2/7 layouts
/// (bolts/csv/*.csv), so the tests do not rely on LNWire's own codec. Values that the tracker does
/// not read are filled with recognisable constants.
enum PhaseMsg {
    static func u8(_ v: UInt8) -> [UInt8] { [v] }
    static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    static func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } }
    static func u64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }
    static func fill(_ n: Int, _ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: n) }
    /// A compressed-point-shaped 33-byte value.
    static func point(_ prefix: UInt8 = 0x02, _ byte: UInt8) -> [UInt8] { [prefix] + fill(32, byte) }
    static func signature() -> [UInt8] { fill(64, 0x5a) }
    static let chainHash = fill(32, 0x6f)

    static func message(_ type: UInt16, _ fields: [UInt8]...) -> [UInt8] { u16(type) + fields.flatMap { $0 } }

    // BOLT 1
    static func initMessage() -> [UInt8] { message(16, u16(0), u16(2), [0x02, 0xa2]) }
    static func error(_ id: [UInt8], _ text: String = "boom") -> [UInt8] {
        message(17, id, u16(UInt16(text.utf8.count)), Array(text.utf8))
    }
    static func warning(_ id: [UInt8]) -> [UInt8] { message(1, id, u16(1), [0x21]) }
    static func ping() -> [UInt8] { message(18, u16(4), u16(2), [0, 0]) }
    static func pong() -> [UInt8] { message(19, u16(4), fill(4, 0)) }
    static func custom(_ type: UInt16 = 32769) -> [UInt8] { message(type, Array("hello".utf8)) }

    // BOLT 7
    static func channelUpdate() -> [UInt8] {
        message(258, signature(), chainHash, u64(0x0001_0000_0100_0001), u32(1), u8(0), u8(0), u16(144),
                u64(1), u32(1000), u32(1), u64(1_000_000))
    }

    // BOLT 2, v1 establishment
    static func openChannel(_ temp: [UInt8]) -> [UInt8] {
        message(32, chainHash, temp, u64(1_000_000), u64(0), u64(546), u64(5_000_000), u64(10_000), u64(1),
                u32(253), u16(144), u16(483),
                point(0x02, 1), point(0x02, 2), point(0x02, 3), point(0x02, 4), point(0x02, 5), point(0x02, 6),
                u8(1))
    }
    static func acceptChannel(_ temp: [UInt8]) -> [UInt8] {
        message(33, temp, u64(546), u64(5_000_000), u64(10_000), u64(1), u32(3), u16(144), u16(483),
                point(0x03, 1), point(0x03, 2), point(0x03, 3), point(0x03, 4), point(0x03, 5), point(0x03, 6))
    }
    static func fundingCreated(_ temp: [UInt8], txid: [UInt8], index: UInt16) -> [UInt8] {
        message(34, temp, txid, u16(index), signature())
    }
    static func fundingSigned(_ id: [UInt8]) -> [UInt8] { message(35, id, signature()) }
    static func channelReady(_ id: [UInt8]) -> [UInt8] { message(36, id, point(0x02, 7)) }

    // BOLT 2, v2 establishment and interactive construction
    static func openChannel2(_ temp: [UInt8], revocationBasepoint: [UInt8]) -> [UInt8] {
        message(64, chainHash, temp, u32(2500), u32(253), u64(1_000_000), u64(546), u64(5_000_000), u64(1),
                u16(144), u16(483), u32(120),
                point(0x02, 1), revocationBasepoint, point(0x02, 3), point(0x02, 4), point(0x02, 5),
                point(0x02, 6), point(0x02, 7), u8(1))
    }
    static func acceptChannel2(_ temp: [UInt8], revocationBasepoint: [UInt8]) -> [UInt8] {
        message(65, temp, u64(0), u64(546), u64(5_000_000), u64(1), u32(3), u16(144), u16(483),
                point(0x03, 1), revocationBasepoint, point(0x03, 3), point(0x03, 4), point(0x03, 5),
                point(0x03, 6), point(0x03, 7))
    }
    static func txAddInput(_ id: [UInt8], serial: UInt64) -> [UInt8] {
        message(66, id, u64(serial), u16(3), [1, 2, 3], u32(0), u32(0xffff_fffd))
    }
    static func txAddOutput(_ id: [UInt8], serial: UInt64) -> [UInt8] {
        message(67, id, u64(serial), u64(1_000_000), u16(34), [0x00, 0x20] + fill(32, 0x44))
    }
    static func txComplete(_ id: [UInt8]) -> [UInt8] { message(70, id) }
    static func txSignatures(_ id: [UInt8]) -> [UInt8] { message(71, id, fill(32, 0x77), u16(0)) }
    static func txAbort(_ id: [UInt8]) -> [UInt8] { message(74, id, u16(0)) }
    static func spliceInit(_ id: [UInt8]) -> [UInt8] {
        message(80, id, u64(100_000), u32(2500), u32(0), point(0x02, 9))
    }
    static func spliceAck(_ id: [UInt8]) -> [UInt8] { message(81, id, u64(0), point(0x03, 9)) }
    static func spliceLocked(_ id: [UInt8]) -> [UInt8] { message(77, id, fill(32, 0x78)) }
    static func stfu(_ id: [UInt8], initiator: Bool) -> [UInt8] { message(2, id, u8(initiator ? 1 : 0)) }

    // BOLT 2, normal operation
    static func updateAddHTLC(_ id: [UInt8], htlc: UInt64) -> [UInt8] {
        message(128, id, u64(htlc), u64(10_000), fill(32, 0x48), u32(800_000), fill(1366, 0))
    }
    static func updateFulfillHTLC(_ id: [UInt8], htlc: UInt64) -> [UInt8] { message(130, id, u64(htlc), fill(32, 0x50)) }
    static func updateFailHTLC(_ id: [UInt8], htlc: UInt64) -> [UInt8] { message(131, id, u64(htlc), u16(2), [0, 0]) }
    static func updateFee(_ id: [UInt8]) -> [UInt8] { message(134, id, u32(1000)) }
    static func commitmentSigned(_ id: [UInt8]) -> [UInt8] { message(132, id, signature(), u16(0)) }
    static func revokeAndAck(_ id: [UInt8]) -> [UInt8] { message(133, id, fill(32, 0x52), point(0x02, 8)) }
    static func channelReestablish(_ id: [UInt8]) -> [UInt8] {
        message(136, id, u64(5), u64(4), fill(32, 0x53), point(0x02, 9))
    }

    // BOLT 2, close
    static let scriptA = [0x00, 0x14] + fill(20, 0xa1)
    static let scriptB = [0x00, 0x14] + fill(20, 0xb1)
    static func shutdown(_ id: [UInt8], script: [UInt8] = scriptA) -> [UInt8] {
        message(38, id, u16(UInt16(script.count)), script)
    }
    static func closingSigned(_ id: [UInt8], fee: UInt64) -> [UInt8] { message(39, id, u64(fee), signature()) }
    /// `closing_complete` (40) or `closing_sig` (41), both laid out alike, with one TLV signature.
    static func simpleClose(_ type: UInt16, _ id: [UInt8], closer: [UInt8], closee: [UInt8], fee: UInt64) -> [UInt8] {
        message(type, id, u16(UInt16(closer.count)), closer, u16(UInt16(closee.count)), closee, u64(fee), u32(0),
                [3, 64], signature())
    }
}

/// Hex to bytes for the hard-coded test digests.
func phaseHex(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(hex.utf8)[...]
    while chars.count >= 2 {
        out.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
        chars = chars.dropFirst(2)
    }
    return out
}

/// A tracker that has seen both `init`s, so the connection is out of `init`.
func trackerAfterInit() -> PhaseTracker {
    var tracker = PhaseTracker()
    _ = tracker.observe(PhaseMsg.initMessage(), direction: .aToB)
    _ = tracker.observe(PhaseMsg.initMessage(), direction: .bToA)
    return tracker
}

/// A deterministic byte source for the robustness tests (xorshift64*), so failures reproduce.
struct PhaseTestRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
