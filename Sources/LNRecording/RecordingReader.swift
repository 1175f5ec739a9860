import Foundation
import LNWire

/// One recorded Lightning message.
public struct RecordedMessage: Sendable, Equatable {
    /// 0-based position among the recording's messages.
    public var index: Int
    public var direction: Direction
    public var timestampNanos: UInt64
    /// The decrypted message: 2-byte type and payload.
    public var bytes: [UInt8]
    /// Annotations (what a rule did, phase changes).
    public var comments: [String]
    /// Whether the data matched its CRC-32.
    public var checksumOK: Bool
    /// Where its block starts in the file.
    public var offset: Int

    /// The message type, or nil for a runt shorter than 2 bytes.
    public var type: UInt16? { bytes.count >= 2 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : nil }
}

/// One recorded session event.
public struct RecordedEvent: Sendable, Equatable {
    public var timestampNanos: UInt64
    public var event: RecordingEvent
    public var offset: Int
}

/// Something wrong with a recording that the reader worked around.
public enum RecordingProblem: Sendable, Equatable, CustomStringConvertible {
    /// A message's data does not match its CRC-32 (the message is still returned, flagged).
    case badChecksum(offset: Int, index: Int)
    /// The file ends inside a block: what a kill during a write leaves. Everything before it is intact.
    case truncatedTail(offset: Int, bytes: Int)
    /// A block's length fields are inconsistent; reading stopped there.
    case corrupt(offset: Int, reason: String)
    /// An event packet whose data is not an lnrr event.
    case unreadableEvent(offset: Int)

    public var description: String {
        switch self {
        case .badChecksum(let offset, let index): return "message #\(index) at byte \(offset): checksum mismatch (data altered)"
        case .truncatedTail(let offset, let bytes): return "truncated tail: \(bytes) bytes at byte \(offset) are an incomplete record (the writer was stopped mid-write); every record before it is intact"
        case .corrupt(let offset, let reason): return "corrupt block at byte \(offset): \(reason); reading stopped there"
        case .unreadableEvent(let offset): return "event at byte \(offset) is not lnrr JSON"
        }
    }
}

/// A message seen through `RecordingReader.scan`: its data points into the mapped file.
public struct MessageView {
    public var index: Int
    public var direction: Direction
    public var timestampNanos: UInt64
    public var data: UnsafeRawBufferPointer
    public var checksumOK: Bool
}

/// A record in file order.
public enum RecordingEntry: Sendable, Equatable {
    case message(RecordedMessage)
    case event(RecordedEvent)
}

/// Reads lnrr recordings, tolerating what crashes and editors leave behind.
public struct RecordingReader {
    public let path: String
    public private(set) var metadata: SessionMetadata?
    /// Problems met so far.
    public private(set) var problems: [RecordingProblem] = []
    /// The offset just past the last complete block read; `readNew` continues from here.
    public private(set) var offset = 0
    private var messageIndex = 0
    private var linkTypes: [UInt16] = []

    /// Opens a recording and reads what it holds so far (metadata, problems); use `readNew` to go on
    /// reading what is appended later.
    public init(path: String) throws {
        self.path = path
        var bytes = try Self.readFile(path, from: 0)
        try Self.validate(bytes, path: path)
        _ = parse(&bytes, visit: { _ in }, tolerateTail: true)
    }

    private init(validated path: String) {
        self.path = path
    }

    private static func validate(_ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { try validate($0, path: path) }
    }

    private static func validate(_ bytes: UnsafeRawBufferPointer, path: String) throws {
        guard bytes.count >= 12 else {
            throw RecordingError.notARecording(path, bytes.isEmpty ? "the file is empty" : "too short for a pcapng header")
        }
        let type = bytes.loadUnaligned(as: UInt32.self).littleEndian
        let magic = bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
        guard type == Pcapng.sectionHeaderType, magic == Pcapng.byteOrderMagic else {
            throw RecordingError.notARecording(path, "no little-endian pcapng section header")
        }
    }

    /// Reads every record from the start.
    public static func readAll(path: String) throws -> (reader: RecordingReader, entries: [RecordingEntry]) {
        var reader = RecordingReader(validated: path)
        var entries: [RecordingEntry] = []
        var bytes = try readFile(path, from: 0)
        try validate(bytes, path: path)
        _ = reader.parse(&bytes) { entries.append($0) }
        return (reader, entries)
    }

    /// Forgets what was read, so the next `readNew` starts at the beginning of the file.
    public mutating func rewind() {
        offset = 0
        messageIndex = 0
        linkTypes = []
        problems = []
    }

    /// Reads records appended since the last call (for `--follow`); a block still being written is
    /// left for next time, not reported.
    public mutating func readNew(visit: (RecordingEntry) -> Void) throws {
        var bytes = try Self.readFile(path, from: offset)
        let base = offset
        var local = self
        local.offset = 0
        local.problems = []
        _ = local.parse(&bytes, visit: visit, tolerateTail: true)
        offset = base + local.offset
        messageIndex = local.messageIndex
        linkTypes = local.linkTypes
        if metadata == nil { metadata = local.metadata }
        problems += local.problems
    }

    static func readFile(_ path: String, from start: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RecordingError.cannotRead(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        let size = max(0, Int(info.st_size) - start)
        var bytes = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, size - got, off_t(start + got)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        bytes.removeLast(size - got)
        return bytes
    }

    /// Walks the blocks of `bytes` (which start at `self.offset` relative positions of 0).
    private mutating func parse(_ bytes: inout [UInt8], visit: (RecordingEntry) -> Void, tolerateTail: Bool = false) -> Bool {
        let base = offset
        return bytes.withUnsafeBytes { raw -> Bool in parse(raw, base: base, visit: visit, tolerateTail: tolerateTail) }
    }

    private mutating func parse(_ raw: UnsafeRawBufferPointer, base: Int, visit: (RecordingEntry) -> Void, tolerateTail: Bool) -> Bool {
        do {
            var at = 0
            while at < raw.count {
                let fileOffset = base + at
                guard raw.count - at >= 12 else {
                    if !tolerateTail { problems.append(.truncatedTail(offset: fileOffset, bytes: raw.count - at)) }
                    break
                }
                let type = raw.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian
                let length = Int(raw.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self).littleEndian)
                guard length >= 12, length % 4 == 0 else {
                    problems.append(.corrupt(offset: fileOffset, reason: "block length \(length) is not a multiple of 4 of at least 12"))
                    offset = base + at
                    return false
                }
                guard raw.count - at >= length else {
                    if !tolerateTail { problems.append(.truncatedTail(offset: fileOffset, bytes: raw.count - at)) }
                    break
                }
                let trailer = Int(raw.loadUnaligned(fromByteOffset: at + length - 4, as: UInt32.self).littleEndian)
                guard trailer == length else {
                    problems.append(.corrupt(offset: fileOffset, reason: "its two length fields differ (\(length) and \(trailer))"))
                    offset = base + at
                    return false
                }
                let body = UnsafeRawBufferPointer(rebasing: raw[(at + 8)..<(at + length - 4)])
                switch type {
                case Pcapng.sectionHeaderType:
                    linkTypes = []
                    Self.forEachOption(body, from: 16) { code, value in
                        let text = String(decoding: value, as: UTF8.self)
                        if code == Pcapng.optComment, text.hasPrefix(Pcapng.metadataCommentPrefix) {
                            metadata = try? JSONDecoder().decode(SessionMetadata.self, from: Data(text.dropFirst(Pcapng.metadataCommentPrefix.count).utf8))
                        }
                    }
                case Pcapng.interfaceDescriptionType:
                    linkTypes.append(body.count >= 2 ? body.loadUnaligned(as: UInt16.self).littleEndian : 0)
                case Pcapng.enhancedPacketType:
                    readPacket(body, fileOffset: fileOffset, visit: visit)
                default:
                    break  // other blocks (e.g. added by editcap) are skipped
                }
                at += length
            }
            offset = base + at
            return true
        }
    }

    private mutating func readPacket(_ body: UnsafeRawBufferPointer, fileOffset: Int, visit: (RecordingEntry) -> Void) {
        guard body.count >= 20 else {
            problems.append(.corrupt(offset: fileOffset, reason: "packet block too short"))
            return
        }
        let interface = Int(body.loadUnaligned(as: UInt32.self).littleEndian)
        let high = UInt64(body.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian)
        let low = UInt64(body.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
        let captured = Int(body.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian)
        guard 20 + captured <= body.count else {
            problems.append(.corrupt(offset: fileOffset, reason: "packet data runs past its block"))
            return
        }
        let data = UnsafeRawBufferPointer(rebasing: body[20..<(20 + captured)])
        let timestamp = high << 32 | low
        let optionsStart = 20 + (captured + 3) / 4 * 4
        let linkType = interface < linkTypes.count ? linkTypes[interface] : 0
        if linkType == Pcapng.eventsLinkType {
            if let event = RecordingEvent(json: data) {
                visit(.event(RecordedEvent(timestampNanos: timestamp, event: event, offset: fileOffset)))
            } else {
                problems.append(.unreadableEvent(offset: fileOffset))
            }
            return
        }
        guard linkType == Pcapng.messagesLinkType else { return }
        var direction: Direction = .aToB
        var comments: [String] = []
        var checksumOK = true
        let wantsComments = fastVisitor == nil
        Self.forEachOption(body, from: optionsStart) { code, value in
            switch code {
            case Pcapng.optComment:
                if wantsComments { comments.append(String(decoding: value, as: UTF8.self)) }
            case Pcapng.epbFlags where value.count == 4:
                direction = Pcapng.direction(fromFlags: value.loadUnaligned(as: UInt32.self).littleEndian) ?? .aToB
            case Pcapng.epbHash where value.count == 5 && value[0] == Pcapng.hashAlgorithmCRC32:
                let stored = UInt32(value[1]) << 24 | UInt32(value[2]) << 16 | UInt32(value[3]) << 8 | UInt32(value[4])
                checksumOK = CRC32.checksum(data) == stored
            default:
                break
            }
        }
        let index = messageIndex
        messageIndex += 1
        if !checksumOK { problems.append(.badChecksum(offset: fileOffset, index: index)) }
        if let fastVisitor {
            fastVisitor(MessageView(index: index, direction: direction, timestampNanos: timestamp, data: data, checksumOK: checksumOK))
            return
        }
        visit(.message(RecordedMessage(index: index, direction: direction, timestampNanos: timestamp, bytes: Array(data),
                                       comments: comments, checksumOK: checksumOK, offset: fileOffset)))
    }

    /// Set by `scan`: messages go here as views into the mapped file instead of becoming entries.
    private var fastVisitor: ((MessageView) -> Void)?

    /// Streams every record of a recording to `visit`, in file order, without holding them all.
    public static func forEachEntry(path: String, visit: (RecordingEntry) -> Void) throws -> RecordingReader {
        try withMapped(path) { raw in
            var reader = RecordingReader(validated: path)
            _ = reader.parse(raw, base: 0, visit: visit, tolerateTail: false)
            return reader
        }
    }

    private static func withMapped<T>(_ path: String, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RecordingError.cannotRead(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        let size = Int(info.st_size)
        guard size > 0 else { throw RecordingError.notARecording(path, "the file is empty") }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw RecordingError.cannotRead(path, String(cString: strerror(errno)))
        }
        defer { munmap(base, size) }
        _ = madvise(base, size, MADV_SEQUENTIAL)
        let raw = UnsafeRawBufferPointer(start: base, count: size)
        try validate(raw, path: path)
        return try body(raw)
    }

    /// Reads a whole recording through memory mapping, handing each message to `onMessage` as a view
    /// (valid only during the call; nothing is copied) and each event to `onEvent`. The fast path for
    /// listing and counting large recordings.
    public static func scan(path: String, onMessage: @escaping (MessageView) -> Void,
                            onEvent: @escaping (RecordedEvent) -> Void = { _ in }) throws -> RecordingReader {
        try withMapped(path) { raw in
            var reader = RecordingReader(validated: path)
            reader.fastVisitor = onMessage
            _ = reader.parse(raw, base: 0, visit: { entry in
                if case .event(let event) = entry { onEvent(event) }
            }, tolerateTail: false)
            reader.fastVisitor = nil
            return reader
        }
    }

    /// Calls `body` for each option of a block body from `start`, without allocating.
    @inline(__always)
    private static func forEachOption(_ body: UnsafeRawBufferPointer, from start: Int, _ visit: (UInt16, UnsafeRawBufferPointer) -> Void) {
        var at = start
        while at + 4 <= body.count {
            let code = body.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian
            let length = Int(body.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self).littleEndian)
            if code == Pcapng.optEndOfOpt { break }
            guard at + 4 + length <= body.count else { break }
            visit(code, UnsafeRawBufferPointer(rebasing: body[(at + 4)..<(at + 4 + length)]))
            at += 4 + (length + 3) / 4 * 4
        }
    }
}
