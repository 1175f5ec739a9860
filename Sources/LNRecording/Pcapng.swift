import LNWire

/// The pcapng constants lnrr uses, and the encoder of its blocks (little-endian).
///
/// See docs/recording-format.md for the layout these produce.
public enum Pcapng {
    static let sectionHeaderType: UInt32 = 0x0A0D_0D0A
    static let interfaceDescriptionType: UInt32 = 0x0000_0001
    static let enhancedPacketType: UInt32 = 0x0000_0006
    static let byteOrderMagic: UInt32 = 0x1A2B_3C4D

    static let optEndOfOpt: UInt16 = 0
    static let optComment: UInt16 = 1
    static let shbUserAppl: UInt16 = 4
    static let ifName: UInt16 = 2
    static let ifTsresol: UInt16 = 9
    static let epbFlags: UInt16 = 2
    static let epbHash: UInt16 = 3
    static let epbPacketID: UInt16 = 5
    static let hashAlgorithmCRC32: UInt8 = 2

    /// LINKTYPE_USER0: decrypted Lightning messages (2-byte type + payload).
    public static let messagesLinkType: UInt16 = 147
    /// LINKTYPE_USER1: session events, one JSON object per packet.
    public static let eventsLinkType: UInt16 = 148
    /// Interface ids in every lnrr recording.
    public static let messagesInterface: UInt32 = 0
    public static let eventsInterface: UInt32 = 1
    /// Prefix of the section-header comment that carries the session metadata as JSON.
    public static let metadataCommentPrefix = "lnrr: "

    /// `epb_flags` direction bits: a->b is "inbound" (01), b->a "outbound" (10).
    static func flags(for direction: Direction) -> UInt32 { direction == .aToB ? 0b01 : 0b10 }
    static func direction(fromFlags flags: UInt32) -> Direction? {
        switch flags & 0b11 {
        case 0b01: return .aToB
        case 0b10: return .bToA
        default: return nil
        }
    }
}

/// Appends pcapng blocks to a byte array.
struct BlockEncoder {
    var bytes: [UInt8]

    init(reservingCapacity capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inline(__always) mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v)); bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }

    @inline(__always) mutating func u32(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inline(__always) mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }

    mutating func option(_ code: UInt16, _ value: UnsafeRawBufferPointer) {
        u16(code)
        u16(UInt16(value.count))
        bytes.append(contentsOf: value)
        pad()
    }

    mutating func option(_ code: UInt16, string: String) {
        var s = string
        s.withUTF8 { option(code, UnsafeRawBufferPointer($0)) }
    }

    /// Starts a block; returns where its length goes.
    mutating func begin(_ type: UInt32) -> Int {
        let start = bytes.count
        u32(type)
        u32(0)  // total length, patched by end()
        return start
    }

    mutating func end(_ start: Int) {
        u16(Pcapng.optEndOfOpt)
        u16(0)
        let total = UInt32(bytes.count - start + 4)
        u32(total)
        withUnsafeBytes(of: total.littleEndian) { raw in
            for i in 0..<4 { bytes[start + 4 + i] = raw[i] }
        }
    }

    /// Section header with lnrr's name and the metadata JSON in a comment; both interfaces.
    mutating func header(userAppl: String, metadataJSON: String) {
        let shb = begin(Pcapng.sectionHeaderType)
        u32(Pcapng.byteOrderMagic)
        u16(1); u16(0)          // version 1.0
        u32(0xFFFF_FFFF); u32(0xFFFF_FFFF)  // section length: not specified
        option(Pcapng.shbUserAppl, string: userAppl)
        option(Pcapng.optComment, string: Pcapng.metadataCommentPrefix + metadataJSON)
        end(shb)
        for (linkType, name) in [(Pcapng.messagesLinkType, "lightning"), (Pcapng.eventsLinkType, "lnrr-events")] {
            let idb = begin(Pcapng.interfaceDescriptionType)
            u16(linkType); u16(0)
            u32(0)  // snaplen: no limit
            option(Pcapng.ifName, string: name)
            var resolution: UInt8 = 9  // nanoseconds
            withUnsafeBytes(of: &resolution) { option(Pcapng.ifTsresol, $0) }
            end(idb)
        }
    }

    /// One Enhanced Packet Block.
    mutating func packet(interface: UInt32, timestampNanos: UInt64, data: UnsafeRawBufferPointer,
                         flags: UInt32?, packetID: UInt64?, comments: [String]) {
        let epb = begin(Pcapng.enhancedPacketType)
        u32(interface)
        u32(UInt32(truncatingIfNeeded: timestampNanos >> 32))
        u32(UInt32(truncatingIfNeeded: timestampNanos))
        u32(UInt32(data.count)); u32(UInt32(data.count))
        bytes.append(contentsOf: data)
        pad()
        for comment in comments { option(Pcapng.optComment, string: comment) }
        if let flags {
            withUnsafeBytes(of: flags.littleEndian) { option(Pcapng.epbFlags, $0) }
        }
        // epb_hash: algorithm octet 2 (CRC-32), then the CRC-32 big-endian.
        let crc = CRC32.checksum(data)
        var hash: (UInt8, UInt8, UInt8, UInt8, UInt8) = (Pcapng.hashAlgorithmCRC32, UInt8(crc >> 24), UInt8((crc >> 16) & 0xff), UInt8((crc >> 8) & 0xff), UInt8(crc & 0xff))
        withUnsafeBytes(of: &hash) { option(Pcapng.epbHash, UnsafeRawBufferPointer(rebasing: $0[0..<5])) }
        if let packetID {
            withUnsafeBytes(of: packetID.littleEndian) { option(Pcapng.epbPacketID, $0) }
        }
        end(epb)
    }
}
