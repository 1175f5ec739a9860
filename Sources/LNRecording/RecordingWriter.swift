import Foundation
import LNFileIO
import LNWire

/// Writes one session's recording without a thread of its own.
///
/// Callers encode records into a buffer (a memory copy and a CRC-32, under a short lock). With
/// `--sync message` the caller's batch is written by the caller itself when it calls `kick()` (or
/// `message` without `deferWake`), before it delivers the messages: one `write(2)` per batch (group
/// commit), and nothing delivered is missing from the file after a `kill -9`. With `batch` and
/// `none`, one of the shared `WriterPool` threads writes within 5 ms / 250 ms. When the buffer passes
/// its high-water mark, `onBackpressure(true)` asks the proxy to stop reading sockets;
/// `onBackpressure(false)` follows once it drains.
///
/// A write error (a full disk, an I/O error) ends the recording: `onFailure` is called once with the
/// cause (`ENOSPC: no space left on device (writing PATH)`), later messages are counted but not
/// written, and the events that follow (the session's `close`) are still written, into disk space
/// reserved ahead (`fallocate`) for that purpose, after a `recording-failed` event naming the cause.
/// The file always ends with whole records.
public final class RecordingWriter: @unchecked Sendable {
    /// The recording's path.
    public let path: String
    public let metadata: SessionMetadata
    private let fd: Int32
    private let sync: SyncMode
    /// Guards the buffer and counters. Never held across `write(2)`.
    private let lock = NSLock()
    /// Serialises writing: whoever holds it takes the buffer and writes it, so file order is buffer
    /// order. Taken before `lock`.
    private let writeLock = NSLock()
    private var pending = BlockEncoder(reservingCapacity: 4 * 1024)
    private var spare = BlockEncoder()
    private var closing = false
    private var fileClosed = false
    private var blocked = false
    private var failure: String?
    private var failureEventWritten = false
    private var unrecorded = 0
    private var stalled = false
    private var messageCount = 0
    private var packetID: [UInt64] = [0, 0]
    /// Bytes of whole records in the file (only under `writeLock`).
    private var fileSize = 0
    /// Disk space reserved up to this offset (only under `writeLock`).
    private var allocated = 0
    private var canReserve = true
    private let worker: WriterPool.Worker
    /// Set under the worker's lock: whether this writer waits in one of its queues.
    var queuedNow = false
    var queuedLater = false
    private let onBackpressure: @Sendable (Bool) -> Void
    private let onFailure: @Sendable (String) -> Void

    /// Above this many buffered bytes the proxy is asked to stop reading; below `lowWater` it resumes.
    public static let highWater = 8 * 1024 * 1024
    public static let lowWater = 2 * 1024 * 1024
    /// Disk space kept reserved past the end of the file, so the events that say why a recording
    /// stopped still fit when the disk is full.
    static let reserve = 8 * 1024
    /// How far ahead space is reserved at a time (one `fallocate` per this many bytes written).
    static let reserveChunk = 64 * 1024

    /// The number of threads writing all recordings of this process (constant).
    public static var writerThreads: Int { WriterPool.shared.threadCount }

    /// Creates `directory/<metadata.fileName>` (directory 0700 if new, file 0600, never overwriting)
    /// and writes the section header and interface descriptions.
    public init(directory: String, metadata: SessionMetadata, sync: SyncMode,
                onBackpressure: @escaping @Sendable (Bool) -> Void = { _ in },
                onFailure: @escaping @Sendable (String) -> Void = { _ in }) throws {
        try Self.makeDirectory(directory)
        var name = metadata.fileName
        var fd: Int32 = -1
        var path = ""
        for attempt in 0..<100 {
            path = (directory as NSString).appendingPathComponent(name)
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 { break }
            guard errno == EEXIST else { throw RecordingError.cannotCreate(path, Self.cause(errno)) }
            name = metadata.fileName.replacingOccurrences(of: ".pcapng", with: "-\(attempt + 1).pcapng")
        }
        guard fd >= 0 else { throw RecordingError.cannotCreate(directory, "too many recordings with the same name") }
        self.path = path
        fchmod(fd, 0o600)  // the mode given to open is filtered by the umask
        self.fd = fd
        self.metadata = metadata
        self.sync = sync
        self.onBackpressure = onBackpressure
        self.onFailure = onFailure
        self.worker = WriterPool.shared.assign()

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = String(decoding: try encoder.encode(metadata), as: UTF8.self)
        var header = BlockEncoder()
        header.header(userAppl: "lnrr \(metadata.lnrrVersion)", metadataJSON: json)
        let error = reserveSpace(for: header.bytes.count) ? Self.writeAll(fd, header.bytes).error : Self.cause(ENOSPC)
        if let error {
            Foundation.close(fd)
            unlink(path)
            throw RecordingError.cannotCreate(path, error)
        }
        fileSize = header.bytes.count
    }

    private static func makeDirectory(_ directory: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw RecordingError.cannotCreate(directory, "not a directory") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw RecordingError.cannotCreate(directory, error.localizedDescription)
        }
    }

    // MARK: Producers (any thread)

    /// Records one Lightning message (2-byte type + payload) with its annotations.
    ///
    /// Callers that relay in batches (the proxy, per socket read) pass `deferWake: true` and call
    /// `kick()` once per batch, before delivering it. Otherwise, with `.message`, the record is
    /// written before this returns.
    public func message(_ bytes: UnsafeRawBufferPointer, direction: Direction, timestampNanos: UInt64, comments: [String] = [],
                        deferWake: Bool = false) {
        lock.lock()
        guard !closing else { lock.unlock(); return }
        let slot = direction == .aToB ? 0 : 1
        packetID[slot] += 1
        messageCount += 1
        guard failure == nil else {
            // The recording has ended; the session is being ended for it. Counted, so the file says
            // how many it lacks.
            unrecorded += 1
            lock.unlock()
            return
        }
        // Packet ids count per direction: high bit says which, so a->b #n and b->a #n differ.
        let id = packetID[slot] | (direction == .bToA ? 1 << 63 : 0)
        pending.packet(interface: Pcapng.messagesInterface, timestampNanos: timestampNanos, data: bytes,
                       flags: Pcapng.flags(for: direction), packetID: id, comments: comments)
        enqueued(deferWake: deferWake)
    }

    public func message(_ bytes: [UInt8], direction: Direction, timestampNanos: UInt64, comments: [String] = []) {
        bytes.withUnsafeBytes { message($0, direction: direction, timestampNanos: timestampNanos, comments: comments) }
    }

    /// Writes (`.message`) or schedules (`batch`, `none`) what was recorded with `deferWake`. The
    /// proxy calls it once per socket read, before it flushes the messages of that read onward.
    public func kick() {
        switch sync {
        case .message:
            flush()
        case .batch, .none:
            break  // the batch's first record already asked the pool for a timed flush
        }
    }

    /// Records a session event. The writer adds its per-direction message counts to `close` and,
    /// when the recording failed, a `recording-failed` event before it.
    public func event(_ event: RecordingEvent, timestampNanos: UInt64) {
        lock.lock()
        guard !closing else { lock.unlock(); return }
        var event = event
        if event.name == "close" {
            appendFailureEventIfNeeded(timestampNanos: timestampNanos)
            event.fields[RecordingEvent.recordedAToBField] = .int(Int(packetID[0]))
            event.fields[RecordingEvent.recordedBToAField] = .int(Int(packetID[1]))
        }
        appendEvent(event, timestampNanos: timestampNanos)
        // Events are not on the delivery path: the pool writes them, promptly with `.message`.
        enqueued(deferWake: sync != .message, event: true)
    }

    /// With `lock` held.
    private func appendEvent(_ event: RecordingEvent, timestampNanos: UInt64) {
        var json = event.json
        json.withUTF8 { utf8 in
            pending.packet(interface: Pcapng.eventsInterface, timestampNanos: timestampNanos, data: UnsafeRawBufferPointer(utf8),
                           flags: nil, packetID: nil, comments: [])
        }
    }

    /// With `lock` held.
    private func appendFailureEventIfNeeded(timestampNanos: UInt64) {
        guard let failure, !failureEventWritten else { return }
        failureEventWritten = true
        appendEvent(RecordingEvent(name: RecordingEvent.recordingFailedName,
                                   fields: ["cause": .string(failure), "unrecorded": .int(unrecorded)]),
                    timestampNanos: timestampNanos)
    }

    /// Called with `lock` held; releases it. Writes now, or asks the pool to.
    private func enqueued(deferWake: Bool, event: Bool = false) {
        let size = pending.bytes.count
        var block = false
        if !blocked && size >= Self.highWater {
            blocked = true
            block = true
        }
        // batch/none: one timed flush per buffer, asked for by its first record (not one pool
        // wake-up per record); a full buffer asks for an immediate one.
        let threshold = sync == .batch ? 256 * 1024 : 4 * 1024 * 1024
        let full = size >= threshold && !flushAsked
        let timed = !timedFlushAsked
        if full { flushAsked = true }
        if timed { timedFlushAsked = true }
        lock.unlock()
        if block { onBackpressure(true) }
        switch sync {
        case .message:
            if event { worker.schedule(self, delaySlot: nil) }
            else if !deferWake { flush() }
        case .batch, .none:
            if full { worker.schedule(self, delaySlot: nil) }
            else if timed { worker.schedule(self, delaySlot: sync == .batch ? 0 : 1) }
        }
    }

    /// Whether the buffer being filled has already asked the pool for a flush (under `lock`; reset
    /// when a flush takes the buffer).
    private var flushAsked = false
    private var timedFlushAsked = false

    // MARK: Writing (the caller with `.message`, a pool thread otherwise)

    /// Writes everything buffered. Safe from any thread; concurrent calls queue on `writeLock`.
    func flush(force: Bool = false) {
        writeLock.lock()
        lock.lock()
        if fileClosed || (stalled && !force) || pending.bytes.isEmpty {
            lock.unlock()
            writeLock.unlock()
            return
        }
        swap(&pending, &spare)
        flushAsked = false
        timedFlushAsked = false
        let failedBefore = failure != nil
        lock.unlock()

        var error: String?
        let result: (written: Int, error: String?)
        if failedBefore {
            // Only the events that explain the end are buffered now: they go into the reserve.
            result = Self.writeAll(fd, spare.bytes)
        } else {
            let fits = reserveSpace(for: spare.bytes.count)
            let limit = fits ? spare.bytes.count : Self.wholeBlocks(spare.bytes, upTo: max(0, allocated - Self.reserve - fileSize))
            result = Self.writeAll(fd, spare.bytes, limit: limit)
            error = result.error ?? (fits ? nil : Self.cause(ENOSPC))
        }
        let written = Self.wholeBlocks(spare.bytes, upTo: result.written)
        if result.written > written {
            // A write that failed mid-record: cut it, so the file ends on a whole record.
            _ = ftruncate(fd, off_t(fileSize + written))
            lseek(fd, off_t(fileSize + written), SEEK_SET)
        }
        fileSize += written
        let lost = Self.messageBlocks(spare.bytes, from: written)
        spare.bytes.removeAll(keepingCapacity: spare.bytes.capacity <= 256 * 1024)

        lock.lock()
        var report: String?
        if let error, failure == nil {
            failure = error
            unrecorded += lost
            report = "\(error) (writing \(path))"
            // Messages buffered meanwhile will not be written; its events (a `close`) still will.
            unrecorded += Self.messageBlocks(pending.bytes, from: 0)
            pending.bytes = Self.eventBlocks(pending.bytes)
        }
        var release = false
        if blocked && (pending.bytes.count < Self.lowWater || failure != nil) {
            blocked = false
            release = true
        }
        lock.unlock()
        writeLock.unlock()
        if let report { onFailure(report) }
        if release { onBackpressure(false) }
    }

    /// Makes sure `count` more bytes plus the reserve are allocated on disk. False when the disk
    /// cannot give them. Filesystems without `fallocate` are written to without a reserve.
    private func reserveSpace(for count: Int) -> Bool {
        #if os(Linux)
        guard canReserve else { return true }
        let need = fileSize + count + Self.reserve
        if need <= allocated { return true }
        let keepSize: Int32 = 0x01  // FALLOC_FL_KEEP_SIZE: the file's size does not change
        let target = max(need, allocated + Self.reserveChunk)
        if linuxFallocate(fd, keepSize, off_t(allocated), off_t(target - allocated)) == 0 {
            allocated = target
            return true
        }
        if errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL {
            canReserve = false
            return true
        }
        if linuxFallocate(fd, keepSize, off_t(allocated), off_t(need - allocated)) == 0 {
            allocated = need
            return true
        }
        return false
        #else
        return true
        #endif
    }

    /// Walks the pcapng blocks this writer buffered in `bytes`, from `start`: `body` gets each whole
    /// block's offset, length and whether it is a message (an Enhanced Packet Block on the messages
    /// interface), and returns false to stop. The one reader of the writer's own buffers below.
    private static func forEachBlock(_ bytes: [UInt8], from start: Int = 0,
                                     _ body: (_ at: Int, _ length: Int, _ isMessage: Bool) -> Bool) {
        bytes.withUnsafeBytes { raw in
            var at = start
            while at + 12 <= raw.count {
                let type = raw.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian
                let length = Int(raw.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self).littleEndian)
                let interface = raw.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self).littleEndian
                guard length > 0, at + length <= raw.count else { return }
                let isMessage = type == Pcapng.enhancedPacketType && interface == Pcapng.messagesInterface
                guard body(at, length, isMessage) else { return }
                at += length
            }
        }
    }

    /// The length of the longest prefix of `bytes` made of whole blocks and at most `limit` long.
    static func wholeBlocks(_ bytes: [UInt8], upTo limit: Int) -> Int {
        var end = 0
        forEachBlock(bytes) { at, length, _ in
            guard at + length <= limit else { return false }
            end = at + length
            return true
        }
        return end
    }

    /// How many message blocks `bytes` holds from `start` (messages that did not reach the file).
    static func messageBlocks(_ bytes: [UInt8], from start: Int) -> Int {
        var count = 0
        forEachBlock(bytes, from: start) { _, _, isMessage in
            if isMessage { count += 1 }
            return true
        }
        return count
    }

    /// The event blocks of `bytes`, in order (what is kept of a buffer once writing has failed).
    static func eventBlocks(_ bytes: [UInt8]) -> [UInt8] {
        var kept: [UInt8] = []
        forEachBlock(bytes) { at, length, isMessage in
            if !isMessage { kept.append(contentsOf: bytes[at..<(at + length)]) }
            return true
        }
        return kept
    }

    /// Holds writing still, as a disk that cannot keep up would (tests only).
    func stallForTesting(_ stall: Bool) {
        lock.lock()
        stalled = stall
        lock.unlock()
        if !stall { worker.schedule(self, delaySlot: nil) }
    }

    /// `ENOSPC: no space left on device`: the errno's name, for logs and close reasons.
    static func cause(_ code: Int32) -> String {
        let names: [Int32: String] = [ENOSPC: "ENOSPC", EDQUOT: "EDQUOT", EIO: "EIO", EFBIG: "EFBIG", EROFS: "EROFS",
                                      EBADF: "EBADF", EACCES: "EACCES", EPERM: "EPERM", EMFILE: "EMFILE", ENFILE: "ENFILE",
                                      ENOENT: "ENOENT", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", ENXIO: "ENXIO"]
        var text = String(cString: strerror(code))
        if let first = text.first { text = first.lowercased() + text.dropFirst() }
        return "\(names[code] ?? "errno \(code)"): \(text)"
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], limit: Int? = nil) -> (written: Int, error: String?) {
        let total = limit ?? bytes.count
        let result = bytes.withUnsafeBytes { FileIO.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[..<total])) }
        return (result.written, result.errno.map(cause))
    }

    /// Writes everything buffered, fsyncs and closes the file. Returns the number of messages
    /// recorded; throws if any write failed.
    @discardableResult
    public func close() throws -> Int {
        lock.lock()
        if !closing {
            appendFailureEventIfNeeded(timestampNanos: UInt64(Date().timeIntervalSince1970 * 1e9))
            closing = true
        }
        lock.unlock()
        flush(force: true)
        writeLock.lock()
        lock.lock()
        if !fileClosed {
            fileClosed = true
            fsync(fd)
            #if os(Linux)
            if allocated > fileSize {
                // Give back the reserve: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE.
                _ = linuxFallocate(fd, 0x02 | 0x01, off_t(fileSize), off_t(allocated - fileSize))
            }
            #endif
            Foundation.close(fd)
        }
        let failure = self.failure
        let count = messageCount - unrecorded
        lock.unlock()
        writeLock.unlock()
        if let failure { throw RecordingError.writeFailed(path, failure) }
        return count
    }
}

/// Problems creating, writing or reading recordings.
public enum RecordingError: Error, Equatable, CustomStringConvertible {
    case cannotCreate(String, String)
    case writeFailed(String, String)
    case cannotRead(String, String)
    case notARecording(String, String)
    /// The file's `format` is a version this lnrr does not read.
    case unsupportedFormat(String, String)

    public var description: String {
        switch self {
        case .cannotCreate(let path, let why): return "cannot create recording \(path): \(why)"
        case .writeFailed(let path, let why): return "recording \(path) is incomplete: a write failed: \(why)"
        case .cannotRead(let path, let why): return "cannot read \(path): \(why)"
        case .notARecording(let path, let why): return "\(path) is not an lnrr recording: \(why)"
        case .unsupportedFormat(let path, let format):
            return "\(path) is in format '\(format)', which this lnrr (reading lnrr-pcapng/1) does not know; use the lnrr version that wrote it"
        }
    }
}

#if os(Linux)
/// glibc's `fallocate(2)`, which Swift's Glibc module hides behind `_GNU_SOURCE`. Used with
/// `FALLOC_FL_KEEP_SIZE` to reserve disk space past the end of a recording without changing its size.
@_silgen_name("fallocate")
private func linuxFallocate(_ fd: Int32, _ mode: Int32, _ offset: off_t, _ length: off_t) -> Int32
#endif
