import Foundation

/// The fixed set of threads that write every recording's buffered records: one per core (at least
/// two, at most eight), however many sessions record. Each `RecordingWriter` is bound to one thread
/// for its life, so its `write(2)`s stay in order, and asks it to flush now (`.message` events, a
/// full buffer) or after a delay (`.batch`: 5 ms, `.none`: 250 ms).
final class WriterPool: @unchecked Sendable {
    static let shared = WriterPool(threads: min(8, max(2, ProcessInfo.processInfo.activeProcessorCount)))

    private let workers: [Worker]
    private let lock = NSLock()
    private var next = 0

    init(threads: Int) {
        workers = (0..<threads).map { Worker(name: "lnrr-recorder-\($0)") }
    }

    /// The number of writer threads.
    var threadCount: Int { workers.count }

    /// A worker for a new recording, round-robin.
    func assign() -> Worker {
        lock.lock()
        defer { lock.unlock() }
        next = (next + 1) % workers.count
        return workers[next]
    }

    /// A FIFO of writers with the monotonic time they are due (delays are constant per queue, so
    /// arrival order is due order).
    struct Queue {
        /// A popped slot is set to nil at once: a closed recording's writer (and its buffers) must not
        /// stay referenced until the whole queue happens to drain, which under steady traffic is never.
        private var items: [(due: UInt64, writer: RecordingWriter?)] = []
        private var head = 0
        var isEmpty: Bool { head == items.count }
        var firstDue: UInt64? { isEmpty ? nil : items[head].due }
        mutating func append(_ writer: RecordingWriter, due: UInt64) { items.append((due, writer)) }
        mutating func popFirst() -> RecordingWriter {
            let writer = items[head].writer!
            items[head].writer = nil
            head += 1
            if head == items.count {
                items.removeAll(keepingCapacity: items.count <= 1024)  // give a burst's memory back
                head = 0
            } else if head > 1024 && head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            return writer
        }
    }

    final class Worker: @unchecked Sendable {
        private let condition = NSCondition()
        private var now = Queue()
        private var later = [Queue(), Queue()]  // 5 ms (batch), 250 ms (none)
        static let delays: [UInt64] = [5_000_000, 250_000_000]

        init(name: String) {
            let thread = Thread { [self] in
                #if os(Linux)
                _ = linuxSetThreadName(pthread_self(), name)  // shows in /proc and top (at most 15 bytes)
                #endif
                run()
            }
            thread.name = name
            thread.stackSize = 256 * 1024  // it only loops over writers
            thread.start()
        }

        /// Asks for `writer` to be flushed now, or after the delay of `slot` (0: 5 ms, 1: 250 ms).
        func schedule(_ writer: RecordingWriter, delaySlot: Int?) {
            condition.lock()
            if let slot = delaySlot {
                if !writer.queuedLater {
                    writer.queuedLater = true
                    later[slot].append(writer, due: Self.monotonic() + Self.delays[slot])
                    if now.isEmpty { condition.signal() }  // it may be sleeping towards a later deadline
                }
            } else if !writer.queuedNow {
                writer.queuedNow = true
                now.append(writer, due: 0)
                condition.signal()
            }
            condition.unlock()
        }

        static func monotonic() -> UInt64 {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        }

        private func run() {
            var batch: [RecordingWriter] = []
            condition.lock()
            while true {
                let time = Self.monotonic()
                while !now.isEmpty {
                    let writer = now.popFirst()
                    writer.queuedNow = false
                    batch.append(writer)
                }
                for slot in later.indices {
                    while let due = later[slot].firstDue, due <= time {
                        let writer = later[slot].popFirst()
                        writer.queuedLater = false
                        batch.append(writer)
                    }
                }
                if batch.isEmpty {
                    let dues = later.compactMap(\.firstDue)
                    if let due = dues.min() {
                        _ = condition.wait(until: Date(timeIntervalSinceNow: Double(due - min(due, time)) / 1e9))
                    } else {
                        condition.wait()
                    }
                    continue
                }
                condition.unlock()
                for writer in batch { writer.flush() }
                batch.removeAll(keepingCapacity: batch.count <= 1024)
                condition.lock()
            }
        }
    }
}

#if os(Linux)
/// glibc's `pthread_setname_np`, hidden from Swift behind `_GNU_SOURCE`.
@_silgen_name("pthread_setname_np")
private func linuxSetThreadName(_ thread: pthread_t, _ name: UnsafePointer<CChar>) -> Int32
#endif
