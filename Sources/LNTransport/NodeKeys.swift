import CSodium
/// Callers of LNTransport get the one hex codec without importing LNHex themselves.
@_exported import LNHex

/// A node's 32-byte secp256k1 secret key.
///
/// Its `description` never shows the key: secrets must not reach logs or terminals by accident.
public struct NodeSecret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    let bytes: [UInt8]

    /// The node id (compressed public key) of this secret.
    public let nodeID: NodeID

    /// A secret from 32 raw bytes; fails for zero or values not below the curve order.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else { throw KeyError.wrongLength(bytes.count * 2) }
        guard Crypto.isValidSecret(bytes) else { throw KeyError.outOfRange }
        self.bytes = bytes
        self.nodeID = NodeID(validated: Crypto.publicKey(of: bytes))
    }

    /// A secret from 64 hex characters; surrounding whitespace (newlines, spaces) is ignored so a key
    /// pasted from elsewhere (e.g. CLN's `--dev-force-privkey` value) reads as is.
    public init(hex: String) throws {
        let trimmed = hex.trimmingWhitespace()
        guard trimmed.count == 64 else { throw KeyError.wrongLength(trimmed.count) }
        guard let bytes = HexString.decode(trimmed) else { throw KeyError.notHex }
        try self.init(bytes: bytes)
    }

    /// A fresh secret from libsodium's CSPRNG.
    public static func random() -> NodeSecret {
        while true {
            if let secret = try? NodeSecret(bytes: Crypto.randomBytes(32)) { return secret }
        }
    }

    /// The secret as 64 lowercase hex characters: only for writing key files.
    public var hexForKeyFile: String { HexString.encode(bytes) }

    public var description: String { "NodeSecret(for \(nodeID.hex), redacted)" }
    public var debugDescription: String { description }
}

/// A node id: a 33-byte compressed secp256k1 public key, shown as 66 hex characters.
public struct NodeID: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    /// The 33 bytes of the compressed public key.
    public let bytes: [UInt8]

    init(validated bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// A node id from its 33 bytes; fails unless they are a valid compressed point.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == 33, bytes[0] == 2 || bytes[0] == 3, Crypto.parsePublicKey(bytes[...]) != nil else {
            throw KeyError.invalidNodeID(HexString.encode(bytes.prefix(40)))
        }
        self.bytes = bytes
    }

    /// A node id from 66 hex characters.
    public init(hex: String) throws {
        let trimmed = hex.trimmingWhitespace()
        guard trimmed.count == 66, let bytes = HexString.decode(trimmed) else {
            throw KeyError.invalidNodeID(redactingSecrets(String(trimmed.prefix(80))))  // never echo a pasted secret
        }
        try self.init(bytes: bytes)
    }

    /// 66 lowercase hex characters.
    public var hex: String { HexString.encode(bytes) }

    /// The first 8 hex characters: enough to tell test nodes apart in file names and listings.
    public var shortHex: String { String(hex.prefix(8)) }

    public var description: String { hex }

    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }

    public init(from decoder: Decoder) throws {
        try self.init(hex: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}

/// Problems with keys and node ids. Messages never include a secret.
public enum KeyError: Error, Equatable, CustomStringConvertible {
    case wrongLength(Int)
    case notHex
    case outOfRange
    case invalidNodeID(String)

    public var description: String {
        switch self {
        case .wrongLength(let n): return "a node secret is 64 hex characters; found \(n)"
        case .notHex: return "a node secret must be hex (0-9, a-f)"
        case .outOfRange: return "not a valid secp256k1 secret (zero or not below the curve order)"
        case .invalidNodeID(let text): return "'\(text)' is not a node id: expected 66 hex characters of a compressed public key (02... or 03...)"
        }
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let first = s.first, first.isWhitespace { s = s.dropFirst() }
        while let last = s.last, last.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

/// SHA-256, for callers (recordings, rules, the CLI) that need a digest without linking libsodium
/// themselves.
public enum SHA256Digest {
    public static func of<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        Crypto.sha256(Array(bytes))
    }
}
