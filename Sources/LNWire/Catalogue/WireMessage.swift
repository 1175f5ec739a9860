/// Small facts about whole messages (2-byte type, then payload) that several layers need.
public enum WireMessage {
    /// The message's type, or nil for a runt shorter than its 2-byte type.
    @inlinable
    public static func type(_ message: [UInt8]) -> UInt16? {
        message.count >= 2 ? UInt16(message[0]) << 8 | UInt16(message[1]) : nil
    }

    /// The same for any byte collection (a relay buffer's bytes, a slice): the one place the 2-byte
    /// big-endian type is read.
    @inlinable
    public static func type<Bytes: Collection<UInt8>>(_ message: Bytes) -> UInt16? {
        var i = message.startIndex
        guard i != message.endIndex else { return nil }
        let high = message[i]
        message.formIndex(after: &i)
        guard i != message.endIndex else { return nil }
        return UInt16(high) << 8 | UInt16(message[i])
    }

    /// BOLT 1's answer to a `ping`: a `pong` of `num_pong_bytes` zero bytes. Nil when the ping is too
    /// short to hold `num_pong_bytes`, or asks for no answer (65532 or more).
    public static func pong(answering ping: [UInt8]) -> [UInt8]? {
        guard ping.count >= 4 else { return nil }
        let n = Int(ping[2]) << 8 | Int(ping[3])
        guard n < 65532 else { return nil }
        return [0, 19, UInt8(n >> 8), UInt8(n & 0xff)] + [UInt8](repeating: 0, count: n)
    }
}
