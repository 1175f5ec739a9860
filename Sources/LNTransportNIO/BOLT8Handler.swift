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
/// outbound it takes such buffers and writes their encrypted frames. Every protocol decision is
/// made by `BOLT8Machine`; this adapter only feeds it the bytes NIO read and carries out what it
/// says. The machine decrypts in place inside those buffers, so a message reaches the next handler
/// as a slice of the bytes read, without being copied.
///
/// Writes made before the handshake completes are queued and sent, in order, right after it.
/// A `TransportError` is fired through `errorCaught` and the channel is closed.
public final class BOLT8Handler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Which end of the handshake this side plays.
    public typealias Role = BOLT8Machine.Role

    private var machine: BOLT8Machine
    /// The bytes read but not consumed by the machine (part of an act or frame), handed back first
    /// on the next read.
    private var cumulation: ByteBuffer?
    private var queuedWrites = CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>()
    /// The machine's actions for one read; kept between reads to reuse its storage.
    private var actions: [BOLT8Machine.Action] = []
    /// Set when the channel goes inactive, possibly while messages of one read are being handed on.
    private var inactive = false

    public convenience init(role: Role, localSecret: NodeSecret) {
        self.init(role: role, localSecret: localSecret, ephemeral: nil)
    }

    /// - Parameters:
    ///   - ephemeral: only for test vectors; BOLT 8 requires a fresh random key per connection.
    init(role: Role, localSecret: NodeSecret, ephemeral: NodeSecret?) {
        machine = BOLT8Machine(role: role, localSecret: localSecret, ephemeral: ephemeral)
    }

    /// Whether the handshake has completed.
    public var isEstablished: Bool { machine.isEstablished }

    // MARK: Inbound

    public func channelActive(context: ChannelHandlerContext) {
        if let actOne = machine.start() {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: actOne)), promise: nil)
        }
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if machine.isClosed { return }
        var incoming = unwrapInboundIn(data)
        var buffer: ByteBuffer
        if var existing = cumulation {
            // Only the tail of one partial act or frame is carried over, so this copy is small.
            buffer = context.channel.allocator.buffer(capacity: existing.readableBytes + incoming.readableBytes)
            buffer.writeBuffer(&existing)
            buffer.writeBuffer(&incoming)
        } else {
            buffer = incoming
        }
        cumulation = nil

        // Swapped out so that a re-entrant read (a later handler feeding this channel from within
        // channelRead) gets its own array instead of overwriting this one.
        var actions: [BOLT8Machine.Action] = []
        swap(&actions, &self.actions)
        defer {
            actions.removeAll(keepingCapacity: true)
            swap(&actions, &self.actions)
        }
        // Decrypts every complete frame in place, in one pass while the storage is uniquely owned;
        // the slices handed on below are taken only afterwards.
        let consumed = buffer.withUnsafeMutableReadableBytes { machine.receive($0, actions: &actions) }
        let base = buffer.readerIndex
        if consumed < buffer.readableBytes {
            cumulation = buffer.getSlice(at: base + consumed, length: buffer.readableBytes - consumed)
        }
        for action in actions {
            switch action {
            case .send(let bytes):
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            case .handshakeCompleted(let remote):
                // Writes issued during the handshake go out first, in the order they were made.
                while let (message, promise) = queuedWrites.popFirst() {
                    writeFrame(message, promise: promise, context: context)
                }
                context.flush()
                context.fireUserInboundEventTriggered(BOLT8Event.handshakeCompleted(remote: remote))
            case .deliver(let range):
                // A later handler may have closed the channel while handling an earlier message.
                if inactive { return }
                context.fireChannelRead(wrapInboundOut(buffer.getSlice(at: base + range.lowerBound, length: range.count)!))
            case .close(let error):
                cumulation = nil
                failQueuedWrites(error)
                context.fireErrorCaught(error)
                context.close(promise: nil)
            }
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        inactive = true
        cumulation = nil
        if let truncation = machine.end() {
            context.fireErrorCaught(truncation)
        }
        failQueuedWrites(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    private func failQueuedWrites(_ error: Error) {
        while let (_, promise) = queuedWrites.popFirst() {
            promise?.fail(error)
        }
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let message = unwrapOutboundIn(data)
        if machine.isEstablished {
            writeFrame(message, promise: promise, context: context)
        } else if machine.isClosed {
            promise?.fail(ChannelError.ioOnClosedChannel)
        } else {
            queuedWrites.append((message, promise))
        }
    }

    private func writeFrame(_ message: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        let length = message.readableBytes
        var frame = context.channel.allocator.buffer(capacity: length + MessageEncryptor.overhead)
        do {
            try message.withUnsafeReadableBytes { plaintext in
                _ = try frame.writeWithUnsafeMutableBytes(minimumWritableBytes: length + MessageEncryptor.overhead) { output in
                    try machine.seal(plaintext, into: output)
                }
            }
        } catch {
            promise?.fail(error)
            return
        }
        context.write(wrapOutboundOut(frame), promise: promise)
    }
}

// Like swift-nio-ssh's handlers: bound to its channel's event loop, never shared across threads.
@available(*, unavailable)
extension BOLT8Handler: Sendable {}
