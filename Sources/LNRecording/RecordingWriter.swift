import Foundation
import LNWire

/// Writes one session's recording without ever making the relaying thread wait for the disk.
///
/// Callers encode records into a shared buffer (a memory copy and a CRC-32, under a short lock); a
/// dedicated thread takes everything buffered and hands it to the OS in one `write(2)` (group
/// commit). When the disk falls behind and the buffer passes its high-water mark,
/// `onBackpressure(true)` asks the proxy to stop reading sockets; `onBackpressure(false)` follows
/// once it drains. Nothing is dropped: a write error is reported through `onFailure` and by `close()`.
public final class RecordingWriter: @unchecked Sendable {
    /// The recording's path.
    public let path: String
    public let metadata: SessionMetadata
    private let fd: Int32
    private let sync: SyncMode
    private let condition = NSCondition()
    private var pending = BlockEncoder(reservingCapacity: 64 * 1024)
    private var spare = BlockEncoder(reservingCapacity: 64 * 1024)
    private var closing = false
    private var finished = false
    private var blocked = false
    private var writerIdle = false
    private var failure: String?
    private var stalled = false
    private var messageCount = 0
    private var packetID: [UInt64] = [0, 0]
    private var bytesWritten = 0
    private let onBackpressure: @Sendable (Bool) -> Void
    private let onFailure: @Sendable (String) -> Void

    /// Above this many buffered bytes the proxy is asked to stop reading; below `lowWater` it resumes.
    public static let highWater = 8 * 1024 * 1024
    public static let lowWater = 2 * 1024 * 1024

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
            guard errno == EEXIST else { throw RecordingError.cannotCreate(path, String(cString: strerror(errno))) }
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

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = String(decoding: try encoder.encode(metadata), as: UTF8.self)
        var header = BlockEncoder()
        header.header(userAppl: "lnrr \(metadata.lnrrVersion)", metadataJSON: json)
        if let error = Self.writeAll(fd, header.bytes) {
            Foundation.close(fd)
            unlink(path)
            throw RecordingError.cannotCreate(path, error)
        }
        let thread = Thread { [self] in self.run() }
        thread.name = "lnrr-recorder"
        thread.start()
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
    /// `kick()` once per batch: the records still reach the OS within that batch, with one wake-up and
    /// one `write(2)` for all of them instead of one each.
    public func message(_ bytes: UnsafeRawBufferPointer, direction: Direction, timestampNanos: UInt64, comments: [String] = [],
                        deferWake: Bool = false) {
        condition.lock()
        guard !closing else { condition.unlock(); return }
        let slot = direction == .aToB ? 0 : 1
        packetID[slot] += 1
        // Packet ids count per direction: high bit says which, so a->b #n and b->a #n differ.
        let id = packetID[slot] | (direction == .bToA ? 1 << 63 : 0)
        pending.packet(interface: Pcapng.messagesInterface, timestampNanos: timestampNanos, data: bytes,
                       flags: Pcapng.flags(for: direction), packetID: id, comments: comments)
        messageCount += 1
        enqueued(deferWake: deferWake)
    }

    /// Wakes the writer for what was recorded with `deferWake`.
    public func kick() {
        condition.lock()
        let wake = writerIdle && !pending.bytes.isEmpty
        if wake { condition.signal() }
        condition.unlock()
    }

    public func message(_ bytes: [UInt8], direction: Direction, timestampNanos: UInt64, comments: [String] = []) {
        bytes.withUnsafeBytes { message($0, direction: direction, timestampNanos: timestampNanos, comments: comments) }
    }

    /// Records a session event.
    public func event(_ event: RecordingEvent, timestampNanos: UInt64) {
        var json = event.json
        condition.lock()
        guard !closing else { condition.unlock(); return }
        json.withUTF8 { utf8 in
            pending.packet(interface: Pcapng.eventsInterface, timestampNanos: timestampNanos, data: UnsafeRawBufferPointer(utf8),
                           flags: nil, packetID: nil, comments: [])
        }
        enqueued()
    }

    /// Called with the lock held; releases it.
    private func enqueued(deferWake: Bool = false) {
        let size = pending.bytes.count
        let wake: Bool
        switch sync {
        case .message: wake = writerIdle && (!deferWake || size >= 256 * 1024)
        case .batch: wake = writerIdle && size >= 256 * 1024
        case .none: wake = writerIdle && size >= 4 * 1024 * 1024
        }
        var block = false
        if !blocked && size >= Self.highWater {
            blocked = true
            block = true
        }
        if wake { condition.signal() }
        condition.unlock()
        if block { onBackpressure(true) }
    }

    // MARK: The writer thread

    private func run() {
        condition.lock()
        while true {
            while stalled || (pending.bytes.isEmpty && !closing) {
                writerIdle = true
                switch sync {
                case .message: condition.wait()
                case .batch: _ = condition.wait(until: Date(timeIntervalSinceNow: 0.005))
                case .none: _ = condition.wait(until: Date(timeIntervalSinceNow: 0.25))
                }
                writerIdle = false
            }
            if sync == .batch && !closing && pending.bytes.count < 256 * 1024 {
                writerIdle = true
                _ = condition.wait(until: Date(timeIntervalSinceNow: 0.005))
                writerIdle = false
            }
            if pending.bytes.isEmpty && closing { break }
            swap(&pending, &spare)
            condition.unlock()

            var error: String?
            if failure == nil {
                error = Self.writeAll(fd, spare.bytes)
            }
            let written = spare.bytes.count
            spare.bytes.removeAll(keepingCapacity: true)

            condition.lock()
            bytesWritten += written
            if let error, failure == nil {
                failure = error
                condition.unlock()
                onFailure("writing \(path): \(error)")
                condition.lock()
            }
            if blocked && pending.bytes.count < Self.lowWater {
                blocked = false
                condition.unlock()
                onBackpressure(false)
                condition.lock()
            }
        }
        condition.unlock()
        fsync(fd)
        Foundation.close(fd)
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// Holds the writer thread still, as a disk that cannot keep up would (tests only).
    func stallForTesting(_ stall: Bool) {
        condition.lock()
        stalled = stall
        condition.broadcast()
        condition.unlock()
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> String? {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                return String(cString: strerror(errno))
            }
            offset += n
        }
        return nil
    }

    /// Writes everything buffered, fsyncs and closes the file; waits for the writer thread.
    /// Returns the number of messages recorded; throws if any write failed.
    @discardableResult
    public func close() throws -> Int {
        condition.lock()
        closing = true
        condition.signal()
        while !finished { condition.wait() }
        let failure = self.failure
        let count = messageCount
        condition.unlock()
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

    public var description: String {
        switch self {
        case .cannotCreate(let path, let why): return "cannot create recording \(path): \(why)"
        case .writeFailed(let path, let why): return "recording \(path) is incomplete: a write failed: \(why)"
        case .cannotRead(let path, let why): return "cannot read \(path): \(why)"
        case .notARecording(let path, let why): return "\(path) is not an lnrr recording: \(why)"
        }
    }
}
