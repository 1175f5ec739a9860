/// The fundamental field types of BOLT 1 (and the few BOLT 4/7 add).
public enum Fundamental: String, Sendable, CaseIterable {
    case byte, u8, u16, u32, u64, s8, s16, s32, s64, tu16, tu32, tu64, bigsize, varint
    case point, point32, signature, sha256, chain_hash, channel_id, short_channel_id, utf8
    case sciddir_or_pubkey

    /// Encoded size when fixed; nil for truncated integers, bigsize and sciddir_or_pubkey.
    public var fixedSize: Int? {
        switch self {
        case .byte, .u8, .s8, .utf8: return 1
        case .u16, .s16: return 2
        case .u32, .s32: return 4
        case .u64, .s64, .short_channel_id: return 8
        case .point: return 33
        case .point32, .sha256, .chain_hash, .channel_id: return 32
        case .signature: return 64
        case .tu16, .tu32, .tu64, .bigsize, .varint, .sciddir_or_pubkey: return nil
        }
    }
}

/// What a field holds.
public enum FieldKind: Sendable, Equatable {
    case fundamental(Fundamental)
    case subtype(String)
    case tlvStream(String)
    /// A type these CSVs name but do not define (e.g. BOLT 12 streams): kept as raw bytes.
    case opaque(String)
}

/// How many of a field's type there are.
public enum FieldCount: Sendable, Equatable {
    case one
    case fixed(Int)
    /// As many as an earlier field of the same message says.
    case field(String)
    /// To the end of the message (or TLV record).
    case rest
}

/// One field of a message, subtype or TLV record, as the spec names it.
public struct FieldSpec: Sendable, Equatable {
    public let name: String
    public let kind: FieldKind
    public let count: FieldCount

    init(_ name: String, _ kind: FieldKind, _ count: FieldCount) {
        self.name = name
        self.kind = kind
        self.count = count
    }

    /// Byte arrays (and utf8 strings) are shown as one value, not as arrays of numbers.
    var isByteString: Bool {
        if case .fundamental(let f) = kind, f == .byte || f == .utf8, count != .one { return true }
        return false
    }
}

public struct MessageSpec: Sendable {
    public let type: UInt16
    public let name: String
    public let fields: [FieldSpec]
}

public struct TLVRecordSpec: Sendable {
    public let type: UInt64
    public let name: String
    public let fields: [FieldSpec]
}

public struct TLVStreamSpec: Sendable {
    public let name: String
    public let records: [TLVRecordSpec]

    func record(type: UInt64) -> TLVRecordSpec? { records.first { $0.type == type } }
    func record(named name: String) -> TLVRecordSpec? { records.first { $0.name == name } }
}

public struct SubtypeSpec: Sendable {
    public let name: String
    public let fields: [FieldSpec]
}

/// How a message type relates to the BOLTs.
public enum MessageKind: String, Sendable {
    /// Defined by BOLT 1, 2, 4 or 7.
    case known
    /// 32768-65535: reserved for custom messages.
    case custom
    /// Not defined; odd, so a peer ignores it.
    case unknownOdd = "unknown-odd"
    /// Not defined; even, so a peer must fail the connection.
    case unknownEven = "unknown-even"
}

/// The Lightning messages lnrr knows, generated from the BOLT CSVs (see tools/gen-catalogue).
///
/// Lookups by number are array indexing, cheap enough for every relayed message.
public enum MessageCatalogue {
    /// All messages, in the spec's order.
    public static let messages: [MessageSpec] = generatedMessages
    static let tlvStreams: [String: TLVStreamSpec] = Dictionary(uniqueKeysWithValues: generatedTLVStreams.map { ($0.name, $0) })
    static let subtypes: [String: SubtypeSpec] = Dictionary(uniqueKeysWithValues: generatedSubtypes.map { ($0.name, $0) })

    /// A TLV stream (`init_tlvs`) or subtype (`witness`) by the name a field's kind gives, for
    /// code that writes the specs out again (`lnrr export` embeds the CSV rows a test needs).
    public static func tlvStream(named name: String) -> TLVStreamSpec? { tlvStreams[name] }
    public static func subtype(named name: String) -> SubtypeSpec? { subtypes[name] }

    /// Index by type number: entries are indexes into `messages`, -1 where undefined.
    private static let byNumber: [Int16] = {
        var table = [Int16](repeating: -1, count: 32768)
        for (index, message) in messages.enumerated() where message.type < 32768 {
            table[Int(message.type)] = Int16(index)
        }
        return table
    }()

    private static let byName: [String: Int] = Dictionary(uniqueKeysWithValues: messages.enumerated().map { ($1.name, $0) })

    /// The spec of a message type, if the BOLTs define it.
    @inline(__always)
    public static func spec(of type: UInt16) -> MessageSpec? {
        guard type < 32768 else { return nil }
        let index = byNumber[Int(type)]
        return index < 0 ? nil : messages[Int(index)]
    }

    /// The BOLT name of a message type (`ping`), if defined.
    @inline(__always)
    public static func name(of type: UInt16) -> String? { spec(of: type)?.name }

    /// The type of a message name: `ping`, `WIRE_PING`, any case.
    public static func type(named name: String) -> UInt16? {
        var key = name.lowercased()
        if key.hasPrefix("wire_") { key.removeFirst(5) }
        return byName[key].map { messages[$0].type }
    }

    public static func spec(named name: String) -> MessageSpec? { type(named: name).flatMap(spec(of:)) }

    public static func kind(of type: UInt16) -> MessageKind {
        if spec(of: type) != nil { return .known }
        if type >= 32768 { return .custom }
        return type % 2 == 1 ? .unknownOdd : .unknownEven
    }

    /// The name to show: the BOLT name, `custom`, `unknown-odd` or `unknown-even`.
    public static func displayName(of type: UInt16) -> String {
        if let name = name(of: type) { return name }
        return kind(of: type).rawValue
    }

    /// Every message name, for suggestions.
    public static var allNames: [String] { messages.map(\.name) }

    /// The names closest to `name` (edit distance), best first.
    public static func suggestions(for name: String, limit: Int = 3) -> [String] {
        var target = name.lowercased()
        if target.hasPrefix("wire_") { target.removeFirst(5) }
        let threshold = max(2, target.count / 3)
        var scored: [(name: String, distance: Int)] = []
        for candidate in allNames {
            let distance = editDistance(candidate, target)
            if distance <= threshold { scored.append((candidate, distance)) }
        }
        scored.sort { $0.distance == $1.distance ? $0.name < $1.name : $0.distance < $1.distance }
        return scored.prefix(limit).map { $0.name }
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
public func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
