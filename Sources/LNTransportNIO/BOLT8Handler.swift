import LNTransport
import NIOCore

/// Events the BOLT 8 handler sends down the pipeline.
public enum BOLT8Event: Sendable, Equatable {
    /// The handshake finished and the remote is authenticated as `remote`. Messages flow from here.
    case handshakeCompleted(remote: NodeID)
}

/// Runs BOLT 8 on a TCP channel: the handshake, then whole Lightning messages both ways.
///
/// Inbound it turns bytes into `ByteBuffer`s holding one message each (2-byte type and payload);
/// outbound it takes such buffers and writes their encrypted frames. All protocol logic lives in
/// `LNTransport`; this handler only moves bytes and decrypts in place inside the buffers NIO read
/// into, so a message reaches the next handler without being copied.
///
/// Writes made before the handshake completes are queued and sent, in order, right after it.
/// A `TransportError` is fired through `errorCaught` and the channel is closed.
public final class BOLT8Handler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Which end of the handshake this side plays.
    public enum Role: Sendable {
        /// Dial `remote`; the handshake fails unless the peer holds that node's key.
        case initiator(remote: NodeID)
        /// Answer whoever dials; their node id is learned in act three.
        case responder
    }

    private enum State {
        case initiatorAwaitingActTwo(Handshake)
        case responderAwaitingActOne(Handshake)
        case responderAwaitingActThree(Handshake)
        case established(MessageDecryptor)
        case failed
    }

    private let role: Role
    private let localSecret: NodeSecret
    private var state: State
    private var encryptor: MessageEncryptor?
    /// Bytes read but not yet consumed (a partial act or frame).
    private var cumulation: ByteBuffer?
    /// Length of the frame whose header was decrypted but whose body has not fully arrived.
    private var pendingLength: Int?
    private var queuedWrites = CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>()
    /// Offsets and lengths of messages decrypted in one pass over the cumulation (kept to reuse its storage).
    private var decoded: [(offset: Int, length: Int)] = []
    private var slices: [ByteBuffer] = []

    public init(role: Role, localSecret: NodeSecret) {
        self.role = role
        self.localSecret = localSecret
        switch role {
        case .initiator(let remote):
            state = .initiatorAwaitingActTwo(Handshake(initiator: localSecret, remote: remote))
        case .responder:
            state = .responderAwaitingActOne(Handshake(responder: localSecret))
        }
    }

    /// Whether the handshake has completed.
    public var isEstablished: Bool { encryptor != nil }

    // MARK: Inbound

    public func channelActive(context: ChannelHandlerContext) {
        if case .initiatorAwaitingActTwo(var handshake) = state {
            let actOne = handshake.actOne()
            state = .initiatorAwaitingActTwo(handshake)
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: actOne)), promise: nil)
        }
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if case .failed = state { return }
        if var existing = cumulation, existing.readableBytes > 0 {
            // Only the tail of one partial act or frame is carried over, so this copy is small.
            var merged = context.channel.allocator.buffer(capacity: existing.readableBytes + incoming.readableBytes)
            merged.writeBuffer(&existing)
            merged.writeBuffer(&incoming)
            cumulation = merged
        } else {
            cumulation = incoming
        }
        do {
            try process(context: context)
        } catch {
            fail(error, context: context)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let leftover = cumulation?.readableBytes ?? 0
        var truncation: TransportError?
        switch state {
        case .failed:
            break
        case .initiatorAwaitingActTwo:
            truncation = .truncated(expected: Handshake.actTwoLength, got: leftover, during: "act two")
        case .responderAwaitingActOne:
            truncation = .truncated(expected: Handshake.actOneLength, got: leftover, during: "act one")
        case .responderAwaitingActThree:
            truncation = .truncated(expected: Handshake.actThreeLength, got: leftover, during: "act three")
        case .established:
            if let pendingLength {
                truncation = .truncated(expected: pendingLength + MessageDecryptor.macLength, got: leftover, during: "a message body")
            } else if leftover > 0 {
                truncation = .truncated(expected: MessageDecryptor.headerLength, got: leftover, during: "a message header")
            }
        }
        if let truncation {
            state = .failed
            context.fireErrorCaught(truncation)
        }
        failQueuedWrites(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    private func process(context: ChannelHandlerContext) throws {
        while true {
            switch state {
            case .failed:
                return
            case .responderAwaitingActOne(var handshake):
                guard let act = cumulation?.readBytes(length: Handshake.actOneLength) else { return }
                let actTwo = try handshake.readActOne(act)
                state = .responderAwaitingActThree(handshake)
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: actTwo)), promise: nil)
            case .responderAwaitingActThree(var handshake):
                guard let act = cumulation?.readBytes(length: Handshake.actThreeLength) else { return }
                established(try handshake.readActThree(act), context: context)
            case .initiatorAwaitingActTwo(var handshake):
                guard let act = cumulation?.readBytes(length: Handshake.actTwoLength) else { return }
                let (actThree, keys) = try handshake.readActTwo(act)
                context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: actThree)), promise: nil)
                established(keys, context: context)
            case .established(var decryptor):
                try decodeFrames(&decryptor, context: context)
                if case .established = state { state = .established(decryptor) }
                return
            }
        }
    }

    /// Decrypts every complete frame in the cumulation in one pass (so its storage is mutated while
    /// uniquely owned), then hands each message on as a slice of it.
    private func decodeFrames(_ decryptor: inout MessageDecryptor, context: ChannelHandlerContext) throws {
        guard var buffer = cumulation else { return }
        cumulation = nil
        decoded.removeAll(keepingCapacity: true)
        var pending = pendingLength
        var failure: Error?
        let consumed = buffer.withUnsafeMutableReadableBytes { bytes -> Int in
            var offset = 0
            do {
                while true {
                    if pending == nil {
                        guard bytes.count - offset >= MessageDecryptor.headerLength else { break }
                        pending = try decryptor.openLength(UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<offset + MessageDecryptor.headerLength]))
                        offset += MessageDecryptor.headerLength
                    }
                    let length = pending!
                    guard bytes.count - offset >= length + MessageDecryptor.macLength else { break }
                    try decryptor.openBody(UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<offset + length + MessageDecryptor.macLength]))
                    decoded.append((offset, length))
                    offset += length + MessageDecryptor.macLength
                    pending = nil
                }
            } catch {
                failure = error
            }
            return offset
        }
        pendingLength = pending
        let base = buffer.readerIndex
        slices.removeAll(keepingCapacity: true)
        for (offset, length) in decoded {
            slices.append(buffer.getSlice(at: base + offset, length: length)!)
        }
        buffer.moveReaderIndex(forwardBy: consumed)
        if buffer.readableBytes > 0 { cumulation = buffer }
        for slice in slices {
            if case .failed = state { break }
            context.fireChannelRead(wrapInboundOut(slice))
        }
        slices.removeAll(keepingCapacity: true)
        if let failure { throw failure }
    }

    private func established(_ keys: TransportKeys, context: ChannelHandlerContext) {
        encryptor = MessageEncryptor(keys: keys)
        state = .established(MessageDecryptor(keys: keys))
        context.fireUserInboundEventTriggered(BOLT8Event.handshakeCompleted(remote: keys.remote))
        // Writes issued during the handshake go out now, in order, after act three.
        while let (message, promise) = queuedWrites.popFirst() {
            writeFrame(message, promise: promise, context: context)
        }
        context.flush()
    }

    private func fail(_ error: Error, context: ChannelHandlerContext) {
        if case .failed = state { return }
        state = .failed
        cumulation = nil
        failQueuedWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failQueuedWrites(_ error: Error) {
        while let (_, promise) = queuedWrites.popFirst() {
            promise?.fail(error)
        }
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let message = unwrapOutboundIn(data)
        switch state {
        case .failed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        case .established:
            writeFrame(message, promise: promise, context: context)
        default:
            queuedWrites.append((message, promise))
        }
    }

    private func writeFrame(_ message: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        let length = message.readableBytes
        guard length <= MessageEncryptor.maximumMessageLength else {
            promise?.fail(TransportError.messageTooLong(length))
            return
        }
        var frame = context.channel.allocator.buffer(capacity: length + MessageEncryptor.overhead)
        do {
            try message.withUnsafeReadableBytes { plaintext in
                _ = try frame.writeWithUnsafeMutableBytes(minimumWritableBytes: length + MessageEncryptor.overhead) { out in
                    try encryptor!.seal(plaintext, into: out)
                }
            }
        } catch {
            promise?.fail(error)
            return
        }
        context.write(wrapOutboundOut(frame), promise: promise)
    }
}
