/// Why a BOLT 8 connection cannot go on. Every case ends the connection.
public enum TransportError: Error, Equatable, CustomStringConvertible {
    /// An act began with a version byte other than 0.
    case badVersion(act: Int, version: UInt8)
    /// An act carried a public key that is not a valid compressed point.
    case badPublicKey(act: Int)
    /// An act's MAC did not verify: the peer does not hold the key we expect (act one: the dialer
    /// expects another node id; act two: the responder is not who we dialed), or bytes were altered.
    case badActMAC(act: Int)
    /// Act three's encrypted static key did not verify.
    case badActCiphertext
    /// A frame's length or body failed authentication.
    case badFrameMAC(part: FramePart)
    /// The stream ended before a complete act or frame.
    case truncated(expected: Int, got: Int, during: String)
    /// A message longer than BOLT 8's 65535-byte limit was given to send.
    case messageTooLong(Int)
    /// Input arrived after the connection had failed, or a message was sent before the handshake.
    case invalidState(String)

    /// The part of a frame whose MAC failed.
    public enum FramePart: String, Sendable {
        case length, body
    }

    /// Broad classes, for recording why a session ended.
    public enum Category: Sendable {
        case handshake, authentication, truncated, usage
    }

    public var category: Category {
        switch self {
        case .badVersion, .badPublicKey, .badActMAC, .badActCiphertext: return .handshake
        case .badFrameMAC: return .authentication
        case .truncated(_, _, let during): return during.hasPrefix("act") ? .handshake : .truncated
        case .messageTooLong, .invalidState: return .usage
        }
    }

    public var description: String {
        switch self {
        case .badVersion(let act, let version): return "act \(act): unknown handshake version \(version) (only 0 exists)"
        case .badPublicKey(3): return "act three: the initiator's static key is not a valid secp256k1 point"
        case .badPublicKey(let act): return "act \(act): the ephemeral key is not a valid secp256k1 point"
        case .badActMAC(1): return "act one: MAC check failed (the dialer expects a different node id, or the bytes are not BOLT 8)"
        case .badActMAC(2): return "act two: MAC check failed (the node answering is not the node id we dialed)"
        case .badActMAC(let act): return "act \(act): MAC check failed"
        case .badActCiphertext: return "act three: the initiator's static key failed authentication"
        case .badFrameMAC(let part): return "MAC check failed on a message \(part.rawValue): bytes were altered or the keys disagree"
        case .truncated(let expected, let got, let during): return "connection ended during \(during): \(got) of \(expected) bytes"
        case .messageTooLong(let n): return "a message of \(n) bytes exceeds BOLT 8's limit of 65535"
        case .invalidState(let why): return why
        }
    }
}

extension TransportError: Sendable {}
