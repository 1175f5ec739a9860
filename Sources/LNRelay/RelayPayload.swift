import LNWire

/// The bytes of one message (type + payload) as a driver holds them: a NIO `ByteBuffer` in the
/// proxy (so relaying copies nothing), `[UInt8]` in tests. The relay core never looks inside
/// except through `withBytes`, and makes new payloads only for messages lnrr itself sends.
public protocol RelayPayload {
    /// A payload holding a copy of `bytes` (injections, replacements).
    init(bytes: [UInt8])
    /// The message's length in bytes.
    var byteCount: Int { get }
    /// Calls `body` with the message's bytes, valid only during the call.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: RelayPayload where Element == UInt8 {
    public init(bytes: [UInt8]) { self = bytes }
    public var byteCount: Int { count }
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}

extension RelayPayload {
    /// The 2-byte message type, if the message has one.
    @inlinable
    public var messageType: UInt16? {
        withBytes { WireMessage.type($0) }
    }

    /// A copy of the bytes (for the hook and for events; never on the plain relay path).
    public var bytes: [UInt8] { withBytes { Array($0) } }
}
