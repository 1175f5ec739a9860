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
    /// Whether the data was verified against its CRC-32: false when it does not match **and** when
    /// the record has no readable checksum to check it against (`problems` says which).
    public var checksumOK: Bool
    /// Where its block starts in the file.
    public var offset: Int

    /// The message type, or nil for a runt shorter than 2 bytes.
    public var type: UInt16? { WireMessage.type(bytes) }
}

/// One recorded session event.
public struct RecordedEvent: Sendable, Equatable {
    public var timestampNanos: UInt64
    public var event: RecordingEvent
    public var offset: Int
}

/// Something wrong with a recording that the reader worked around. Any of them makes `lnrr show`
/// and `lnrr list` exit 1: the file is not a complete, verified record of the session.
public enum RecordingProblem: Sendable, Equatable, CustomStringConvertible {
    /// A message's data does not match its CRC-32 (the message is still returned, flagged).
    case badChecksum(offset: Int, index: Int)
    /// A message the reader cannot verify (no readable `epb_hash`, a captured length that disagrees
    /// with the original length, no direction): returned, flagged, never counted as good.
    case unverified(offset: Int, index: Int, reason: String)
    /// Messages missing from one direction: the per-direction `epb_packetid` sequence jumps (or the
    /// `close` event counted more than the file holds). `offset` is where the gap was noticed.
    case lostMessages(direction: Direction, count: Int, offset: Int)
    /// A packet names an interface the file does not describe, or a block has a type pcapng does not
    /// define: what a flipped byte makes of a record. It is skipped; reading goes on.
    case unreadableBlock(offset: Int, reason: String)
    /// The file ends inside a block: what a kill during a write leaves. Everything before it is intact.
    case truncatedTail(offset: Int, bytes: Int)
    /// A block's length fields are inconsistent; reading stopped there.
    case corrupt(offset: Int, reason: String)
    /// An event packet whose data is not an lnrr event.
    case unreadableEvent(offset: Int)
    /// lnrr could not write the recording (the disk filled, an I/O error) and said so in the file;
    /// records after that point were not written.
    case recordingFailed(offset: Int, cause: String)

    public var description: String {
        switch self {
        case .badChecksum(let offset, let index): return "message #\(index) at byte \(offset): checksum mismatch (data altered)"
        case .unverified(let offset, let index, let reason): return "message #\(index) at byte \(offset): cannot be verified: \(reason)"
        case .lostMessages(let direction, let count, let offset):
            return "\(count) \(direction.rawValue) message\(count == 1 ? "" : "s") missing before byte \(offset) (gap in the per-direction packet ids)"
        case .unreadableBlock(let offset, let reason): return "block at byte \(offset) skipped: \(reason)"
        case .truncatedTail(let offset, let bytes): return "truncated tail: \(bytes) bytes at byte \(offset) are an incomplete record (lnrr was killed, or a write failed, mid-record); every record before it is intact"
        case .corrupt(let offset, let reason): return "corrupt block at byte \(offset): \(reason); reading stopped there"
        case .unreadableEvent(let offset): return "event at byte \(offset) is not lnrr JSON"
        case .recordingFailed(let offset, let cause): return "the recording is incomplete: writing it failed (\(cause)); the event at byte \(offset) says so, and records after the failure were not written"
        }
    }
}

/// A message seen through `RecordingReader.scan`: its data points into the reader's buffer.
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

/// Reads lnrr recordings, tolerating what crashes and editors leave behind, and reporting whatever
/// it cannot verify. Files are streamed through a bounded buffer (`BlockSource`), never mapped or
/// held whole.
public struct RecordingReader {
    public let path: String
    public private(set) var metadata: SessionMetadata?
    /// Problems met so far.
    public private(set) var problems: [RecordingProblem] = []
    /// The offset just past the last complete block read; `readNew` continues from here.
    public private(set) var offset = 0
    private var messageIndex = 0
    private var linkTypes: [UInt16] = []
    /// The next expected `epb_packetid` sequence number per direction (a->b, b->a).
    private var nextPacketID: [UInt64] = [1, 1]

    /// Opens a recording and reads its header (metadata and interfaces); `readNew` goes on from there.
    /// Throws for a file that is not a regular file, not pcapng, or of a format version it does not know.
    public init(path: String) throws {
        self.path = path
        let source = try BlockSource(path: path)
        try Self.validate(source, path: path)
        _ = try parse(source, visit: { _ in }, tolerateTail: true, headerOnly: true)
    }

    private init(validated path: String) {
        self.path = path
    }

    private static func validate(_ source: BlockSource, path: String) throws {
        guard try source.ensure(12) else {
            throw RecordingError.notARecording(path, source.buffered == 0 ? "the file is empty" : "too short for a pcapng header")
        }
        let raw = source.bytes
        let type = raw.loadUnaligned(as: UInt32.self).littleEndian
        let magic = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
        guard type == Pcapng.sectionHeaderType, magic == Pcapng.byteOrderMagic else {
            throw RecordingError.notARecording(path, "no little-endian pcapng section header")
        }
    }

    /// Reads every record from the start into memory. For large files prefer `forEachEntry` or `scan`,
    /// which stream.
    public static func readAll(path: String) throws -> (reader: RecordingReader, entries: [RecordingEntry]) {
        var entries: [RecordingEntry] = []
        let reader = try forEachEntry(path: path) { entries.append($0) }
        return (reader, entries)
    }

    /// Forgets what was read, so the next `readNew` starts at the beginning of the file.
    public mutating func rewind() {
        offset = 0
        messageIndex = 0
        linkTypes = []
        problems = []
        nextPacketID = [1, 1]
    }

    /// Reads records appended since the last call (for `--follow`); a block still being written is
    /// left for next time, not reported.
    public mutating func readNew(visit: (RecordingEntry) -> Void) throws {
        let source = try BlockSource(path: path, at: offset)
        _ = try parse(source, visit: visit, tolerateTail: true)
    }

    /// Streams every record of a recording to `visit`, in file order, without holding them all.
    public static func forEachEntry(path: String, visit: (RecordingEntry) -> Void) throws -> RecordingReader {
        let source = try BlockSource(path: path)
        try validate(source, path: path)
        var reader = RecordingReader(validated: path)
        _ = try reader.parse(source, visit: visit, tolerateTail: false)
        return reader
    }

    /// Reads a whole recording, handing each message to `onMessage` as a view (valid only during the
    /// call; nothing is copied) and each event to `onEvent`. The fast path for listing and counting
    /// large recordings.
    public static func scan(path: String, onMessage: @escaping (MessageView) -> Void,
                            onEvent: @escaping (RecordedEvent) -> Void = { _ in }) throws -> RecordingReader {
        let source = try BlockSource(path: path)
        try validate(source, path: path)
        var reader = RecordingReader(validated: path)
        reader.fastVisitor = onMessage
        _ = try reader.parse(source, visit: { entry in
            if case .event(let event) = entry { onEvent(event) }
        }, tolerateTail: false)
        reader.fastVisitor = nil
        return reader
    }

    /// Pulls a recording's records one at a time, in file order, through the same bounded buffer
    /// as `forEachEntry`: for a consumer that decides when it wants the next one (a replay's second
    /// pass). `limit` stops it at a file offset, such as where an earlier pass ended (`offset`), so
    /// that records appended since are not seen.
    public final class Cursor {
        public private(set) var reader: RecordingReader
        private let source: BlockSource
        private let limit: Int?
        private var done = false

        public init(path: String, limit: Int? = nil) throws {
            source = try BlockSource(path: path)
            try RecordingReader.validate(source, path: path)
            reader = RecordingReader(validated: path)
            self.limit = limit
        }

        /// The next record, or nil at the end (of the file, of `limit`, or at a corrupt block).
        public func next() throws -> RecordingEntry? {
            var entry: RecordingEntry?
            while entry == nil, !done {
                if let limit, source.position >= limit {
                    done = true
                } else if try reader.parseBlock(source, visit: { entry = $0 }, tolerateTail: limit != nil) != nil {
                    done = true
                }
            }
            reader.offset = source.position
            return entry
        }
    }

    /// Set by `scan`: messages go here as views into the buffer instead of becoming entries.
    private var fastVisitor: ((MessageView) -> Void)?

    /// Block types pcapng defines (besides the three lnrr writes): skipped without comment, so files
    /// passed through editcap or mergecap still read. Any other type is reported.
    private static let otherStandardBlocks: Set<UInt32> = [
        0x0000_0002, 0x0000_0003, 0x0000_0004, 0x0000_0005, 0x0000_0007, 0x0000_0008, 0x0000_0009,
        0x0000_000A, 0x0000_0BAD, 0x4000_0BAD,
    ]

    /// Walks blocks from the source's position; returns false when it stopped at a corrupt block.
    /// `headerOnly` stops before the first packet.
    private mutating func parse(_ source: BlockSource, visit: (RecordingEntry) -> Void, tolerateTail: Bool,
                                headerOnly: Bool = false) throws -> Bool {
        defer { offset = source.position }
        while true {
            if let complete = try parseBlock(source, visit: visit, tolerateTail: tolerateTail, headerOnly: headerOnly) {
                return complete
            }
        }
    }

    /// Reads the block at the source's position (visiting at most one entry) and moves past it.
    /// Nil while reading goes on; otherwise `parse`'s answer: true at the end of the file, false
    /// at a corrupt block.
    fileprivate mutating func parseBlock(_ source: BlockSource, visit: (RecordingEntry) -> Void, tolerateTail: Bool,
                                         headerOnly: Bool = false) throws -> Bool? {
        do {
            let fileOffset = source.position
            guard try source.ensure(12) else {
                if source.buffered > 0 && !tolerateTail { problems.append(.truncatedTail(offset: fileOffset, bytes: source.buffered)) }
                if !tolerateTail { checkSequenceAtEnd(offset: fileOffset) }
                return true
            }
            let head = source.bytes
            let type = head.loadUnaligned(as: UInt32.self).littleEndian
            let length = Int(head.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian)
            guard length >= 12, length % 4 == 0 else {
                problems.append(.corrupt(offset: fileOffset, reason: "block length \(length) is not a multiple of 4 of at least 12"))
                return false
            }
            if headerOnly && type == Pcapng.enhancedPacketType { return true }
            let known = type == Pcapng.sectionHeaderType || type == Pcapng.interfaceDescriptionType || type == Pcapng.enhancedPacketType
            if length > BlockSource.maxBlock {
                if known {
                    problems.append(.corrupt(offset: fileOffset, reason: "a block of \(length) bytes, larger than any lnrr writes"))
                    return false
                }
                // Someone else's large block: check its trailer where it should be, then skip it unread.
                guard source.fileHolds(length) else {
                    if !tolerateTail { problems.append(.truncatedTail(offset: fileOffset, bytes: source.buffered)) }
                    return true
                }
                guard source.u32(at: fileOffset + length - 4) == UInt32(length) else {
                    problems.append(.corrupt(offset: fileOffset, reason: "its two length fields differ"))
                    return false
                }
                noteOtherBlock(type, offset: fileOffset)
                source.skip(length)
                return nil
            }
            guard try source.ensure(length) else {
                if !tolerateTail {
                    problems.append(.truncatedTail(offset: fileOffset, bytes: source.buffered))
                    checkSequenceAtEnd(offset: fileOffset)
                }
                return true
            }
            let raw = source.bytes
            let trailer = Int(raw.loadUnaligned(fromByteOffset: length - 4, as: UInt32.self).littleEndian)
            guard trailer == length else {
                problems.append(.corrupt(offset: fileOffset, reason: "its two length fields differ (\(length) and \(trailer))"))
                return false
            }
            let body = UnsafeRawBufferPointer(rebasing: raw[8..<(length - 4)])
            switch type {
            case Pcapng.sectionHeaderType:
                // A new section is a new session (mergecap): its interfaces and sequences start afresh.
                linkTypes = []
                nextPacketID = [1, 1]
                closeCounts = nil
                var format: String?
                Self.forEachOption(body, from: 16) { code, value in
                    let text = String(decoding: value, as: UTF8.self)
                    if code == Pcapng.optComment, text.hasPrefix(Pcapng.metadataCommentPrefix) {
                        let json = Data(text.dropFirst(Pcapng.metadataCommentPrefix.count).utf8)
                        format = (try? JSONDecoder().decode(FormatOnly.self, from: json))?.format
                        metadata = try? JSONDecoder().decode(SessionMetadata.self, from: json)
                    }
                }
                if let format { try Self.checkFormat(format, path: path) }
            case Pcapng.interfaceDescriptionType:
                linkTypes.append(body.count >= 2 ? body.loadUnaligned(as: UInt16.self).littleEndian : 0)
            case Pcapng.enhancedPacketType:
                readPacket(body, fileOffset: fileOffset, visit: visit)
            default:
                noteOtherBlock(type, offset: fileOffset)
            }
            source.skip(length)
            return nil
        }
    }

    private struct FormatOnly: Decodable { var format: String? }

    /// Refuses a major version this reader does not know (docs/recording-format.md).
    static func checkFormat(_ format: String, path: String) throws {
        let prefix = "lnrr-pcapng/"
        guard format.hasPrefix(prefix) else {
            throw RecordingError.unsupportedFormat(path, format)
        }
        let major = format.dropFirst(prefix.count).prefix { $0 != "." }
        guard major == "1" else { throw RecordingError.unsupportedFormat(path, format) }
    }

    private mutating func noteOtherBlock(_ type: UInt32, offset: Int) {
        guard !Self.otherStandardBlocks.contains(type) else { return }
        problems.append(.unreadableBlock(offset: offset, reason: String(format: "block type 0x%08x is not a pcapng block type (a damaged record?)", type)))
    }

    /// At the end of what was read: messages the close event counted but the file does not hold.
    private mutating func checkSequenceAtEnd(offset: Int) {
        guard let counted = closeCounts else { return }
        for (slot, direction) in [Direction.aToB, .bToA].enumerated() where counted[slot] > nextPacketID[slot] - 1 {
            problems.append(.lostMessages(direction: direction, count: Int(counted[slot] - (nextPacketID[slot] - 1)), offset: offset))
        }
    }

    /// Per-direction message counts from the writer's fields in the `close` event, if present.
    private var closeCounts: [UInt64]?

    private mutating func readPacket(_ body: UnsafeRawBufferPointer, fileOffset: Int, visit: (RecordingEntry) -> Void) {
        guard body.count >= 20 else {
            problems.append(.corrupt(offset: fileOffset, reason: "packet block too short"))
            return
        }
        let interface = Int(body.loadUnaligned(as: UInt32.self).littleEndian)
        let high = UInt64(body.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian)
        let low = UInt64(body.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
        let captured = Int(body.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian)
        let original = Int(body.loadUnaligned(fromByteOffset: 16, as: UInt32.self).littleEndian)
        guard 20 + captured <= body.count else {
            problems.append(.corrupt(offset: fileOffset, reason: "packet data runs past its block"))
            return
        }
        let data = UnsafeRawBufferPointer(rebasing: body[20..<(20 + captured)])
        let timestamp = high << 32 | low
        let optionsStart = 20 + (captured + 3) / 4 * 4
        guard interface < linkTypes.count else {
            problems.append(.unreadableBlock(offset: fileOffset, reason: "a packet on interface \(interface), which the file does not describe (a damaged record?)"))
            return
        }
        let linkType = linkTypes[interface]
        if linkType == Pcapng.eventsLinkType {
            if let event = RecordingEvent(json: data) {
                noteEvent(event, offset: fileOffset)
                visit(.event(RecordedEvent(timestampNanos: timestamp, event: event, offset: fileOffset)))
            } else {
                problems.append(.unreadableEvent(offset: fileOffset))
            }
            return
        }
        guard linkType == Pcapng.messagesLinkType else { return }  // an interface someone else added
        var direction: Direction?
        var comments: [String] = []
        var checksumOK = false
        var hashSeen = false
        var packetID: UInt64?
        let wantsComments = fastVisitor == nil
        let optionsWellFormed = Self.forEachOption(body, from: optionsStart) { code, value in
            switch code {
            case Pcapng.optComment:
                if wantsComments { comments.append(String(decoding: value, as: UTF8.self)) }
            case Pcapng.epbFlags where value.count == 4:
                direction = Pcapng.direction(fromFlags: value.loadUnaligned(as: UInt32.self).littleEndian)
            case Pcapng.epbHash where value.count == 5 && value[0] == Pcapng.hashAlgorithmCRC32:
                let stored = UInt32(value[1]) << 24 | UInt32(value[2]) << 16 | UInt32(value[3]) << 8 | UInt32(value[4])
                hashSeen = true
                checksumOK = CRC32.checksum(data) == stored
            case Pcapng.epbPacketID where value.count == 8:
                packetID = value.loadUnaligned(as: UInt64.self).littleEndian
            default:
                break
            }
        }
        let index = messageIndex
        messageIndex += 1
        // What cannot be verified is flagged, most telling reason first. A shortened captured length
        // shifts the options, so the hash goes missing too: both are named.
        var doubts: [String] = []
        if captured != original { doubts.append("captured length \(captured) differs from original length \(original)") }
        if !hashSeen { doubts.append("no readable CRC-32 (epb_hash missing or malformed)") }
        if !optionsWellFormed { doubts.append("its options do not parse") }
        if direction == nil { doubts.append("no valid direction in epb_flags") }
        if let packetID, let direction {
            let slot = direction == .aToB ? 0 : 1
            let sequence = packetID & ~(1 << 63)
            if (packetID >> 63 == 1) != (direction == .bToA) {
                doubts.append("its packet id says \(direction.reversed.rawValue), its flags \(direction.rawValue)")
            } else if sequence > nextPacketID[slot] {
                problems.append(.lostMessages(direction: direction, count: Int(sequence - nextPacketID[slot]), offset: fileOffset))
                nextPacketID[slot] = sequence + 1
            } else if sequence < nextPacketID[slot] {
                doubts.append("packet id \(sequence) repeats or goes back (expected \(nextPacketID[slot]))")
            } else {
                nextPacketID[slot] = sequence + 1
            }
        } else if packetID == nil, let direction {
            // Files written by other tools may number nothing: the data is still checked by its
            // CRC-32, and the message takes the next number so a later numbered one shows no false gap.
            nextPacketID[direction == .aToB ? 0 : 1] += 1
        }
        if !doubts.isEmpty {
            checksumOK = false
            problems.append(.unverified(offset: fileOffset, index: index, reason: doubts.joined(separator: "; ")))
        } else if !checksumOK {
            problems.append(.badChecksum(offset: fileOffset, index: index))
        }
        let shownDirection = direction ?? .aToB
        if let fastVisitor {
            fastVisitor(MessageView(index: index, direction: shownDirection, timestampNanos: timestamp, data: data, checksumOK: checksumOK))
            return
        }
        visit(.message(RecordedMessage(index: index, direction: shownDirection, timestampNanos: timestamp, bytes: Array(data),
                                       comments: comments, checksumOK: checksumOK, offset: fileOffset)))
    }

    /// Events that say something about the file's completeness.
    private mutating func noteEvent(_ event: RecordingEvent, offset: Int) {
        switch event.name {
        case RecordingEvent.recordingFailedName:
            if case .string(let cause)? = event.fields["cause"] { problems.append(.recordingFailed(offset: offset, cause: cause)) }
        case "close":
            if case .int(let ab)? = event.fields[RecordingEvent.recordedAToBField],
               case .int(let ba)? = event.fields[RecordingEvent.recordedBToAField], ab >= 0, ba >= 0 {
                closeCounts = [UInt64(ab), UInt64(ba)]
            }
        default:
            break
        }
    }

    /// Calls `visit` for each option of a block body from `start`, without allocating. Returns false
    /// when the options are malformed (an option runs past the block, or no end-of-options before
    /// bytes that cannot be options).
    @inline(__always) @discardableResult
    private static func forEachOption(_ body: UnsafeRawBufferPointer, from start: Int, _ visit: (UInt16, UnsafeRawBufferPointer) -> Void) -> Bool {
        var at = start
        while at + 4 <= body.count {
            let code = body.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian
            let length = Int(body.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self).littleEndian)
            if code == Pcapng.optEndOfOpt { return length == 0 }
            guard at + 4 + length <= body.count else { return false }
            visit(code, UnsafeRawBufferPointer(rebasing: body[(at + 4)..<(at + 4 + length)]))
            at += 4 + (length + 3) / 4 * 4
        }
        return at == body.count
    }
}
