/// A whole BOLT 8 connection as one I/O-free state machine: the three acts, then the frame loop, then
/// the end of the stream. The NIO handler (`BOLT8Handler`) is only an adapter that feeds it bytes
/// and carries out the `Action`s it returns; tests and fuzzers drive the very same code.
///
/// The machine works on borrowed buffers so no message is copied: `receive` decrypts frames in
/// place inside the caller's bytes and says where each message now lies. The caller keeps the
/// bytes the machine did not consume and hands them back, followed by new ones, on the next call
/// (as NIO's `ByteToMessageDecoder` does with its cumulation buffer).
///
/// Lifecycle (BOLT 8, "Handshake Exchange"):
///
///     initiator: ready --start()--> awaitingActTwo --act two--> established --> closed
///     responder: awaitingActOne --act one--> awaitingActThree --act three--> established --> closed
///
/// Any invalid input, or the end of the stream inside an act or a frame, closes it with a
/// `TransportError`; a closed machine ignores further input and refuses to seal.
public struct BOLT8Machine: Sendable {
    /// Which end of the handshake this side plays.
    public enum Role: Sendable {
        /// Dial `remote`; the handshake fails unless the peer holds that node's key.
        case initiator(remote: NodeID)
        /// Answer whoever dials; their node id is learned in act three.
        case responder
    }

    /// What the caller must do, in order, after feeding bytes.
    public enum Action: Sendable, Equatable {
        /// Write these bytes to the peer (act two or act three of the handshake).
        case send([UInt8])
        /// The handshake finished: the remote is authenticated as this node and messages may be sealed.
        case handshakeCompleted(NodeID)
        /// A whole message (2-byte type and payload) now lies decrypted at this range of the bytes
        /// passed to `receive`.
        case deliver(Range<Int>)
        /// The connection must end: the peer sent something that is not valid BOLT 8.
        case close(TransportError)
    }

    enum State: Sendable {
        /// Initiator, act one not yet written.
        case ready(Handshake)
        /// Initiator, act one written: waiting for the responder's act two (`<- e, ee`).
        case awaitingActTwo(Handshake)
        /// Responder: waiting for the initiator's act one (`-> e, es`).
        case awaitingActOne(Handshake)
        /// Responder, act two written: waiting for act three (`-> s, se`).
        case awaitingActThree(Handshake)
        /// Reading frames. `bodyLength` is set once a frame's 18-byte header (`lc`) was decrypted
        /// and consumed, until its `l + 16` body bytes (`c`) have all arrived.
        case established(MessageDecryptor, bodyLength: Int?)
        /// Failed or ended: nothing more is read or sent.
        case closed
    }

    private(set) var state: State
    /// The sending half (`sk`, `sn`, `sck`), set when the handshake completes. It lives beside
    /// `state` rather than inside it because sending is independent of where reading has got to.
    private(set) var encryptor: MessageEncryptor?
    /// How many bytes of the last `receive` were not consumed: the part of an act or frame the
    /// caller holds for next time. It is what `end()` reports as received of an unfinished unit.
    private var retained = 0

    /// - Parameters:
    ///   - ephemeral: only for test vectors; BOLT 8 requires a fresh random key per connection.
    public init(role: Role, localSecret: NodeSecret, ephemeral: NodeSecret? = nil) {
        switch role {
        case .initiator(let remote):
            state = .ready(Handshake(initiator: localSecret, remote: remote, ephemeral: ephemeral))
        case .responder:
            state = .awaitingActOne(Handshake(responder: localSecret, ephemeral: ephemeral))
        }
    }

    /// Whether the handshake completed and messages can be sealed.
    public var isEstablished: Bool { encryptor != nil }

    /// Whether the connection failed or ended.
    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// Act one (`-> e, es`) for an initiator that has not sent it yet; nil for a responder or once sent.
    /// Call it when the connection opens.
    public mutating func start() -> [UInt8]? {
        guard case .ready(var handshake) = state else { return nil }
        let actOne = handshake.actOne()
        state = .awaitingActTwo(handshake)
        return actOne
    }

    /// Feeds the bytes read so far: the bytes not consumed last time, then whatever arrived since.
    /// Completes as many acts and frames as `bytes` holds, decrypting frames in place, and appends
    /// what to do to `actions`. Returns how many leading bytes were consumed; the rest must be
    /// passed again, first, on the next call.
    ///
    /// After `.close` nothing further is appended and every byte counts as consumed.
    public mutating func receive(_ bytes: UnsafeMutableRawBufferPointer, actions: inout [Action]) -> Int {
        var offset = 0
        do throws(TransportError) {
            read: while true {
                let available = bytes.count - offset
                switch state {
                case .closed:
                    retained = 0
                    return bytes.count
                case .ready:
                    guard available > 0 else { break read }
                    throw .invalidState("the peer sent data before act one was sent")
                case .awaitingActOne(var handshake):
                    guard available >= Handshake.actOneLength else { break read }
                    let actTwo = try handshake.readActOne(Self.copy(bytes, offset, Handshake.actOneLength))
                    offset += Handshake.actOneLength
                    state = .awaitingActThree(handshake)
                    actions.append(.send(actTwo))
                case .awaitingActTwo(var handshake):
                    guard available >= Handshake.actTwoLength else { break read }
                    let (actThree, keys) = try handshake.readActTwo(Self.copy(bytes, offset, Handshake.actTwoLength))
                    offset += Handshake.actTwoLength
                    actions.append(.send(actThree))
                    established(keys, &actions)
                case .awaitingActThree(var handshake):
                    guard available >= Handshake.actThreeLength else { break read }
                    let keys = try handshake.readActThree(Self.copy(bytes, offset, Handshake.actThreeLength))
                    offset += Handshake.actThreeLength
                    established(keys, &actions)
                case .established(var decryptor, var bodyLength):
                    // The hot path: every complete frame in one pass, the state stored back once.
                    defer { state = .established(decryptor, bodyLength: bodyLength) }
                    while true {
                        if bodyLength == nil {
                            guard bytes.count - offset >= MessageDecryptor.headerLength else { break read }
                            bodyLength = try decryptor.openLength(Self.slice(bytes, offset, MessageDecryptor.headerLength))
                            offset += MessageDecryptor.headerLength
                        }
                        let length = bodyLength!
                        guard bytes.count - offset >= length + MessageDecryptor.macLength else { break read }
                        try decryptor.openBody(Self.slice(bytes, offset, length + MessageDecryptor.macLength))
                        actions.append(.deliver(offset..<offset + length))
                        offset += length + MessageDecryptor.macLength
                        bodyLength = nil
                    }
                }
            }
        } catch {
            close()
            actions.append(.close(error))
            return bytes.count
        }
        retained = bytes.count - offset
        return offset
    }

    /// The stream ended. Returns why that is an error (an act or frame was cut short, with how many
    /// of its bytes arrived), or nil if it ended cleanly between frames, before anything was sent,
    /// or after the machine had already closed. The machine is closed afterwards.
    public mutating func end() -> TransportError? {
        defer { close() }
        switch state {
        case .closed, .ready:
            return nil
        case .awaitingActOne:
            return .truncated(expected: Handshake.actOneLength, got: retained, during: "act one")
        case .awaitingActTwo:
            return .truncated(expected: Handshake.actTwoLength, got: retained, during: "act two")
        case .awaitingActThree:
            return .truncated(expected: Handshake.actThreeLength, got: retained, during: "act three")
        case .established(_, let bodyLength):
            if let bodyLength {
                return .truncated(expected: bodyLength + MessageDecryptor.macLength, got: retained, during: "a message body")
            }
            if retained > 0 {
                return .truncated(expected: MessageDecryptor.headerLength, got: retained, during: "a message header")
            }
            return nil
        }
    }

    /// Writes the frame for `message` (`lc || c`) into `output`, which must hold
    /// `message.count + MessageEncryptor.overhead` bytes. Returns the frame's length.
    public mutating func seal(_ message: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(TransportError) -> Int {
        guard encryptor != nil else {
            throw .invalidState(isClosed ? "the connection is closed" : "cannot send a message before the handshake completes")
        }
        return try encryptor!.seal(message, into: output)
    }

    private mutating func established(_ keys: TransportKeys, _ actions: inout [Action]) {
        encryptor = MessageEncryptor(keys: keys)
        state = .established(MessageDecryptor(keys: keys), bodyLength: nil)
        actions.append(.handshakeCompleted(keys.remote))
    }

    private mutating func close() {
        state = .closed
        encryptor = nil
        retained = 0
    }

    /// An act's bytes, copied: a handshake happens once per connection, so this costs nothing that matters.
    private static func copy(_ bytes: UnsafeMutableRawBufferPointer, _ offset: Int, _ count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count]))
    }

    @inline(__always)
    private static func slice(_ bytes: UnsafeMutableRawBufferPointer, _ offset: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }
}
