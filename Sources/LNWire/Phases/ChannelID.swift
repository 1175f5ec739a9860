/// A 32-byte BOLT 2 `channel_id` or `temporary_channel_id`.
///
/// Stored as four big-endian 64-bit words rather than an array so that reading one from a message,
/// comparing and hashing it never allocate: the phase tracker does that for every relayed message.
public struct ChannelID: Hashable, Sendable {
    var w0: UInt64
    var w1: UInt64
    var w2: UInt64
    var w3: UInt64

    /// The all-zero id, which BOLT 1 uses in `error` and `warning` to mean "all channels" (or "no
    /// particular channel").
    public static let zero = ChannelID(w0: 0, w1: 0, w2: 0, w3: 0)

    init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
        self.w3 = w3
    }

    /// Reads 32 bytes; `nil` unless `bytes` holds exactly 32.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        for (i, byte) in bytes.enumerated() {
            let shifted = UInt64(byte) << UInt64(56 - 8 * (i % 8))
            switch i / 8 {
            case 0: words.0 |= shifted
            case 1: words.1 |= shifted
            case 2: words.2 |= shifted
            default: words.3 |= shifted
            }
        }
        self.init(w0: words.0, w1: words.1, w2: words.2, w3: words.3)
    }

    /// Parses 64 hex digits (either case); `nil` for anything else.
    public init?(hex: some StringProtocol) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        var high: UInt8?
        for scalar in hex.unicodeScalars {
            let nibble: UInt8
            switch scalar.value {
            case 0x30...0x39: nibble = UInt8(scalar.value - 0x30)
            case 0x41...0x46: nibble = UInt8(scalar.value - 0x41 + 10)
            case 0x61...0x66: nibble = UInt8(scalar.value - 0x61 + 10)
            default: return nil
            }
            if let h = high {
                bytes.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        guard high == nil else { return nil }
        self.init(bytes: bytes)
    }

    /// Reads the 32 bytes at `offset` of `buffer`; the caller has checked the length.
    init(_ buffer: UnsafeRawBufferPointer, at offset: Int) {
        self.init(
            w0: PhaseWire.u64(buffer, at: offset),
            w1: PhaseWire.u64(buffer, at: offset + 8),
            w2: PhaseWire.u64(buffer, at: offset + 16),
            w3: PhaseWire.u64(buffer, at: offset + 24)
        )
    }

    /// Whether every byte is zero (BOLT 1's "all channels").
    public var isZero: Bool { (w0 | w1 | w2 | w3) == 0 }

    /// The 32 bytes, in wire order.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for word in [w0, w1, w2, w3] {
            for shift in stride(from: 56, through: 0, by: -8) {
                out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
            }
        }
        return out
    }

    /// All 64 lowercase hex digits.
    public var hex: String { HexString.encode(bytes) }

    /// The first and last four hex digits, e.g. `6a0e..12bd`: enough to tell a connection's
    /// channels apart in logs.
    public var shortHex: String {
        let full = hex
        return "\(full.prefix(4))..\(full.suffix(4))"
    }
}

extension ChannelID: CustomStringConvertible {
    /// The short form (`6a0e..12bd`).
    public var description: String { shortHex }
}

/// Big-endian reads at spec offsets; the phase tracker checks lengths before calling these.
enum PhaseWire {
    static func u64(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    static func u16(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> UInt16 {
        UInt16(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
}
