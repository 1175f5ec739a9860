/// A whole BOLT 8 connection as a byte-stream state machine: feed it whatever arrived, in any
/// fragmentation, and it returns what to send back and the messages that completed.
///
/// This is the I/O-free form for tests and simple callers; the NIO handler drives `Handshake`,
/// `MessageEncryptor` and `MessageDecryptor` directly so it can decrypt inside its own buffers.
public struct TransportSession: Sendable {
    /// What feeding bytes produced, in order.
    public enum Event: Sendable, Equatable {
        /// Bytes to send to the peer (an act of the handshake).
        case send([UInt8])
        /// The handshake finished; the remote is authenticated as this node.
        case handshakeCompleted(NodeID)
        /// A whole Lightning message (2-byte type and payload, as the peer sent it).
        case message([UInt8])
    }

    enum State: Sendable {
        case initiatorAwaitingActTwo(Handshake)
        case responderAwaitingActOne(Handshake)
        case responderAwaitingActThree(Handshake)
        case transport(MessageDecryptor, pendingLength: Int?)
        case failed
    }

    private var state: State
    private var encryptor: MessageEncryptor?
    private var buffer: [UInt8] = []
    private var start = 0

    /// An initiator session and the act one to send first.
    public static func initiator(local: NodeSecret, remote: NodeID, ephemeral: NodeSecret? = nil) -> (TransportSession, actOne: [UInt8]) {
        var handshake = Handshake(initiator: local, remote: remote, ephemeral: ephemeral)
        let actOne = handshake.actOne()
        return (TransportSession(state: .initiatorAwaitingActTwo(handshake)), actOne)
    }

    /// A responder session, waiting for act one.
    public static func responder(local: NodeSecret, ephemeral: NodeSecret? = nil) -> TransportSession {
        TransportSession(state: .responderAwaitingActOne(Handshake(responder: local, ephemeral: ephemeral)))
    }

    private init(state: State) {
        self.state = state
    }

    /// Whether the handshake is done and messages can be sent.
    public var isEstablished: Bool { encryptor != nil }

    /// Feeds bytes from the peer. After an error the session is dead and refuses more input.
    public mutating func receive<C: Collection>(_ bytes: C) throws -> [Event] where C.Element == UInt8 {
        if case .failed = state { throw TransportError.invalidState("the connection already failed") }
        buffer.append(contentsOf: bytes)
        var events: [Event] = []
        do {
            while try step(&events) {}
        } catch {
            state = .failed
            throw error
        }
        if start > 65536 && start > buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        return events
    }

    /// Declares the end of the input stream: an error unless it ended between frames after the handshake.
    public mutating func finish() throws {
        let pending = buffer.count - start
        switch state {
        case .failed: return
        case .initiatorAwaitingActTwo:
            throw TransportError.truncated(expected: Handshake.actTwoLength, got: pending, during: "act two")
        case .responderAwaitingActOne:
            throw TransportError.truncated(expected: Handshake.actOneLength, got: pending, during: "act one")
        case .responderAwaitingActThree:
            throw TransportError.truncated(expected: Handshake.actThreeLength, got: pending, during: "act three")
        case .transport(_, let pendingLength):
            if let pendingLength {
                throw TransportError.truncated(expected: pendingLength + 16, got: pending, during: "a message body")
            }
            if pending > 0 {
                throw TransportError.truncated(expected: MessageDecryptor.headerLength, got: pending, during: "a message header")
            }
        }
    }

    /// The frame for `message`, to send to the peer.
    public mutating func encrypt(_ message: [UInt8]) throws -> [UInt8] {
        guard encryptor != nil else { throw TransportError.invalidState("cannot send a message before the handshake completes") }
        return try encryptor!.seal(message)
    }

    private func take(_ count: Int) -> [UInt8]? {
        buffer.count - start >= count ? Array(buffer[start..<start + count]) : nil
    }

    /// Makes progress on buffered input; false when more bytes are needed.
    private mutating func step(_ events: inout [Event]) throws -> Bool {
        switch state {
        case .failed:
            return false
        case .responderAwaitingActOne(var handshake):
            guard let act = take(Handshake.actOneLength) else { return false }
            start += act.count
            events.append(.send(try handshake.readActOne(act)))
            state = .responderAwaitingActThree(handshake)
            return true
        case .responderAwaitingActThree(var handshake):
            guard let act = take(Handshake.actThreeLength) else { return false }
            start += act.count
            let keys = try handshake.readActThree(act)
            established(keys, &events)
            return true
        case .initiatorAwaitingActTwo(var handshake):
            guard let act = take(Handshake.actTwoLength) else { return false }
            start += act.count
            let (actThree, keys) = try handshake.readActTwo(act)
            events.append(.send(actThree))
            established(keys, &events)
            return true
        case .transport(var decryptor, let pendingLength):
            let available = buffer.count - start
            if let length = pendingLength {
                guard available >= length + MessageDecryptor.macLength else { return false }
                let range = start..<start + length + MessageDecryptor.macLength
                try buffer.withUnsafeMutableBytes { try decryptor.openBody(UnsafeMutableRawBufferPointer(rebasing: $0[range])) }
                events.append(.message(Array(buffer[start..<start + length])))
                start = range.upperBound
                state = .transport(decryptor, pendingLength: nil)
            } else {
                guard available >= MessageDecryptor.headerLength else { return false }
                let range = start..<start + MessageDecryptor.headerLength
                let length = try buffer.withUnsafeMutableBytes { try decryptor.openLength(UnsafeMutableRawBufferPointer(rebasing: $0[range])) }
                start = range.upperBound
                state = .transport(decryptor, pendingLength: length)
            }
            return true
        }
    }

    private mutating func established(_ keys: TransportKeys, _ events: inout [Event]) {
        encryptor = MessageEncryptor(keys: keys)
        state = .transport(MessageDecryptor(keys: keys), pendingLength: nil)
        events.append(.handshakeCompleted(keys.remote))
    }
}
