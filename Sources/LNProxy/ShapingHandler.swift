import LNRules
import NIOCore

/// Carries out the `bandwidth` and `slicer` faults (docs/rules.md, "Faults") on one side's channel.
///
/// It sits first in the pipeline, between the BOLT 8 handler and the socket, so what it splits and
/// paces are the encrypted bytes as they would go on the wire: a `slicer` cuts each frame (and its
/// 18-byte length header) into segments of the given size, a `bandwidth` cap spaces the writes so
/// that no more than the given bytes per second leave. Each segment is written and flushed on its
/// own, so with TCP_NODELAY (set on both of lnrr's sockets) it leaves as its own TCP segment.
///
/// A `limit-data` fault at connect sets a byte budget here too: every byte counts, handshake acts
/// included, and the write that crosses it is cut where it ends.
///
/// With nothing to shape (a `delfault` took the last shaping fault away) bytes that wait go at
/// once, in order, and later writes pass straight through.
///
/// Bounded: above `highWater` bytes waiting it reports itself full, and the session stops reading
/// the side that feeds it, as it does for a slow socket.
final class ShapingHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Bytes waiting above which the sender is no longer read.
    static let highWater = 256 * 1024
    /// Without a slicer, a bandwidth cap writes at most this long a share of a second at once (10 ms),
    /// so the rate holds over short spans too.
    static let quantaPerSecond = 100
    static let catchUp = TimeAmount.milliseconds(20)

    private var bytesPerSecond: Int?
    private var segment: Int?
    /// A slicer's `variation`: each segment is `segment` ± this, drawn from `random`.
    private var variation = 0
    private var random = SplitMix64(seed: 0)
    private var slicer: Fault?
    private var gapNanos: Int64 = 0
    /// Bytes that may still be written (a `limit-data` fault at connect); nil: no limit.
    private var budget: Int?
    private var onLimitReached: (() -> Void)?
    /// The budget is spent: nothing more is written.
    private var cut = false
    private var pending = CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>()
    private var pendingBytes = 0
    private var scheduled: Scheduled<Void>?
    /// The earliest moment the next segment may go (the bandwidth cap and the slicer's gap).
    private var nextSend = NIODeadline.uptimeNanoseconds(0)
    private var closeRequested: (CloseMode, EventLoopPromise<Void>?)?
    private var context: ChannelHandlerContext?
    private let onFullChanged: () -> Void
    private(set) var isFull = false

    init(onFullChanged: @escaping () -> Void) {
        self.onFullChanged = onFullChanged
    }

    /// Shapes from now on as `shaping` says; bytes already waiting follow the new pace (all at
    /// once when there is nothing left to shape), in order.
    func set(_ shaping: Shaping) {
        bytesPerSecond = shaping.bytesPerSecond.map { max(1, $0) }
        if shaping.slicer != slicer {
            slicer = shaping.slicer
            // A new slicer draws its sizes from the seed again: the same rules, the same cuts.
            random = SplitMix64(seed: shaping.seed)
        }
        if case .slicer(let bytes, let gap, let spread) = shaping.slicer {
            segment = max(1, bytes)
            variation = max(0, min(spread, bytes - 1))
            gapNanos = Int64(gap) * 1000
        } else {
            segment = nil
            variation = 0
            gapNanos = 0
        }
        guard let context else { return }
        // The wait computed under the old shaping no longer holds.
        scheduled?.cancel()
        scheduled = nil
        nextSend = .now()
        drain(context)
    }

    /// At most `bytes` more bytes go out; `reached` is called (on a later event-loop turn) once
    /// they have, and what is written after is discarded.
    func limit(_ bytes: Int, reached: @escaping () -> Void) {
        budget = max(0, bytes)
        onLimitReached = reached
    }

    private var isShaping: Bool { bytesPerSecond != nil || segment != nil || budget != nil }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        scheduled?.cancel()
        self.context = nil
        // The channel is gone: what still waited will never be written.
        while let (_, promise) = pending.popFirst() { promise?.fail(ChannelError.ioOnClosedChannel) }
        pendingBytes = 0
        closeRequested?.1?.succeed(())
        closeRequested = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if cut {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        if !isShaping && pending.isEmpty {
            context.write(data, promise: promise)
            return
        }
        let buffer = unwrapOutboundIn(data)
        pending.append((buffer, promise))
        pendingBytes += buffer.readableBytes
        updateFull()
    }

    func flush(context: ChannelHandlerContext) {
        // Bytes written before this handler was added wait in the channel: they go now.
        if pending.isEmpty { context.flush() }
        drain(context)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // What was written goes out first, at the shaped pace (a FIN after the last segment).
        guard mode == .all, !pending.isEmpty else {
            context.close(mode: mode, promise: promise)
            return
        }
        closeRequested = (mode, promise)
    }

    private func drain(_ context: ChannelHandlerContext) {
        guard scheduled == nil else { return }
        while !pending.isEmpty {
            let now = NIODeadline.now()
            if nextSend > now {
                scheduled = context.eventLoop.scheduleTask(deadline: nextSend) { [weak self] in
                    guard let self, let context = self.context else { return }
                    self.scheduled = nil
                    self.drain(context)
                }
                return
            }
            var (buffer, promise) = pending.removeFirst()
            var size = buffer.readableBytes
            if let segment {
                let drawn = variation == 0 ? segment
                    : segment - variation + Int(random.next() % UInt64(2 * variation + 1))
                size = min(size, drawn)
            }
            if let rate = bytesPerSecond { size = min(size, max(1, rate / Self.quantaPerSecond)) }
            var limitReached = false
            if let budget {
                if size >= budget {
                    size = budget
                    limitReached = true
                }
                self.budget = budget - size
            }
            let piece = buffer.readSlice(length: size)!
            pendingBytes -= size
            if limitReached {
                // The budget ends here (perhaps inside an act or a frame header): these bytes are
                // the last; the session is told, and closes the connection.
                context.write(wrapOutboundOut(piece), promise: nil)
                context.flush()
                promise?.fail(ChannelError.outputClosed)
                cutOff(context)
                return
            }
            if buffer.readableBytes > 0 {
                pending.prepend((buffer, promise))
                context.write(wrapOutboundOut(piece), promise: nil)
            } else {
                context.write(wrapOutboundOut(piece), promise: promise)
            }
            context.flush()
            var wait = gapNanos
            if let rate = bytesPerSecond { wait = max(wait, Int64(size) * 1_000_000_000 / Int64(rate)) }
            // A timer that fired late may catch up, by at most `catchUp`: the average rate holds
            // without letting an idle spell turn into a burst.
            nextSend = max(now - Self.catchUp, nextSend) + .nanoseconds(wait)
        }
        updateFull()
        if let (mode, promise) = closeRequested {
            closeRequested = nil
            context.close(mode: mode, promise: promise)
        }
    }

    /// The byte budget is spent: what waits is discarded, and the session hears of it once this
    /// call stack has unwound (it closes the channel, which comes back through this handler).
    private func cutOff(_ context: ChannelHandlerContext) {
        cut = true
        while let (_, promise) = pending.popFirst() { promise?.fail(ChannelError.outputClosed) }
        pendingBytes = 0
        updateFull()
        if let (mode, promise) = closeRequested {
            closeRequested = nil
            context.close(mode: mode, promise: promise)
        }
        if let reached = onLimitReached {
            onLimitReached = nil
            context.eventLoop.execute { reached() }
        }
    }

    private func updateFull() {
        let full = pendingBytes > Self.highWater
        guard full != isFull else { return }
        isFull = full
        onFullChanged()
    }
}

@available(*, unavailable)
extension ShapingHandler: Sendable {}
