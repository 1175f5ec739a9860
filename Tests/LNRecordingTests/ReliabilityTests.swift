import Foundation
import LNWire
import Testing
@testable import LNRecording

/// Regression tests for issue #14 (findings 4, 6, 7, 8): the reader refuses what it cannot verify,
/// streams in bounded memory, refuses non-regular files; writers share a fixed set of threads.
/// Damage is made by editing bytes at offsets the pcapng specification defines (block header 8
/// bytes, then interface id, timestamp high/low, captured and original length).
@Suite("recording reliability")
struct ReliabilityTests {
    let base = RecordingTests()

    func messages(_ entries: [RecordingEntry]) -> [RecordedMessage] {
        entries.compactMap { if case .message(let m) = $0 { return m } else { return nil } }
    }

    /// A fresh recording and its bytes; `edit` damages a copy, which is read back.
    func damaged(_ edit: (inout Data, [RecordedMessage]) -> Void) throws -> (reader: RecordingReader, messages: [RecordedMessage], original: [RecordedMessage]) {
        let path = try base.write(base.directory())
        let original = messages(try RecordingReader.readAll(path: path).entries)
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        edit(&data, original)
        try data.write(to: URL(fileURLWithPath: path))
        let (reader, entries) = try RecordingReader.readAll(path: path)
        return (reader, messages(entries), original)
    }

    func setU32(_ data: inout Data, at offset: Int, _ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { for i in 0..<4 { data[offset + i] = $0[i] } }
    }

    func u32(_ data: Data, at offset: Int) -> UInt32 {
        UInt32(data[offset]) | UInt32(data[offset + 1]) << 8 | UInt32(data[offset + 2]) << 16 | UInt32(data[offset + 3]) << 24
    }

    /// The offset of option `code` in the message block at `block`, found by walking its options.
    func optionOffset(_ data: Data, block: Int, code: UInt16) -> Int? {
        let captured = Int(u32(data, at: block + 20))
        var at = block + 28 + (captured + 3) / 4 * 4
        let end = block + Int(u32(data, at: block + 4)) - 4
        while at + 4 <= end {
            let c = UInt16(data[at]) | UInt16(data[at + 1]) << 8
            let length = Int(UInt16(data[at + 2]) | UInt16(data[at + 3]) << 8)
            if c == code { return at }
            if c == 0 { return nil }
            at += 4 + (length + 3) / 4 * 4
        }
        return nil
    }

    @Test("a message whose epb_hash is missing is flagged, not counted as good")
    func missingHash() throws {
        let (reader, read, original) = try damaged { data, messages in
            let victim = messages[20]
            let at = optionOffset(data, block: victim.offset, code: 3)!
            data[at] = 0x7F  // the option becomes one the reader does not know: no checksum left
        }
        #expect(read.count == original.count)
        #expect(read[20].checksumOK == false)
        #expect(reader.problems.count == 1)
        guard case .unverified(let offset, let index, let reason)? = reader.problems.first else {
            Issue.record("expected an unverified-message problem, got \(reader.problems)"); return
        }
        #expect(offset == original[20].offset && index == 20)
        #expect(reason.contains("no readable CRC-32"))
    }

    @Test("an epb_hash of another algorithm or length is unreadable: flagged")
    func unreadableHash() throws {
        let (reader, read, _) = try damaged { data, messages in
            let at = optionOffset(data, block: messages[7].offset, code: 3)!
            data[at + 4] = 0x09  // algorithm octet: not CRC-32
        }
        #expect(read[7].checksumOK == false)
        #expect(reader.problems.map(\.description).contains { $0.contains("message #7") && $0.contains("cannot be verified") })
    }

    @Test("a captured length shortened by 8 is caught, not returned as a shorter good message")
    func shortenedCapture() throws {
        let (reader, read, original) = try damaged { data, messages in
            let victim = messages.first { $0.bytes.count > 100 }!
            setU32(&data, at: victim.offset + 20, UInt32(victim.bytes.count - 8))
        }
        let victim = original.first { $0.bytes.count > 100 }!
        let damagedMessage = read.first { $0.offset == victim.offset }!
        #expect(damagedMessage.checksumOK == false)
        #expect(reader.problems.contains { problem in
            if case .unverified(victim.offset, _, let reason) = problem { return reason.contains("captured length") }
            return false
        })
    }

    @Test("every single-bit flip of a message's block type or interface is reported, never a silent drop",
          arguments: [0, 150, 299])
    func flippedTypeOrInterface(victimIndex: Int) throws {
        let path = try base.write(base.directory())
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        let victim = messages(try RecordingReader.readAll(path: path).entries)[victimIndex]
        var silent: [String] = []
        for field in [0, 8] {  // block type, interface id
            for bit in 0..<32 {
                var data = original
                data[victim.offset + field + bit / 8] ^= UInt8(1 << (bit % 8))
                try data.write(to: URL(fileURLWithPath: path))
                guard let (reader, entries) = try? RecordingReader.readAll(path: path) else { continue }
                if reader.problems.isEmpty { silent.append("field \(field) bit \(bit): \(messages(entries).count) messages, no problem") }
            }
        }
        #expect(silent.isEmpty, "\(silent)")
    }

    @Test("a message lost from the middle is reported as a gap in its direction, with the count")
    func gapReported() throws {
        let (reader, read, original) = try damaged { data, messages in
            // Two consecutive b->a messages (indices 3 and 6) become blocks of a standard type the
            // reader skips silently (7): only their packet ids can tell.
            for victim in [messages[3], messages[6]] { data[victim.offset] = 0x07 }
        }
        #expect(read.count == original.count - 2)
        #expect(reader.problems == [.lostMessages(direction: .bToA, count: 2, offset: original[9].offset)])
    }

    @Test("the last message of a direction lost: the close event's count reveals it")
    func lostAtEnd() throws {
        let (reader, _, original) = try damaged { data, messages in
            let last = messages.last { $0.direction == .aToB }!
            data[last.offset] = 0x07
        }
        #expect(original.last { $0.direction == .aToB } != nil)
        #expect(reader.problems.contains { if case .lostMessages(.aToB, 1, _) = $0 { return true }; return false })
    }

    @Test("an unknown major version is refused with a clear error; a minor version is read")
    func unknownMajorVersion() throws {
        var metadata = base.metadata()
        metadata.format = "lnrr-pcapng/2"
        let dir = base.directory()
        let writer = try RecordingWriter(directory: dir, metadata: metadata, sync: .message)
        writer.message([0x00, 0x12, 1, 2], direction: .aToB, timestampNanos: 1)
        try writer.close()
        #expect(throws: RecordingError.unsupportedFormat(writer.path, "lnrr-pcapng/2")) { try RecordingReader.readAll(path: writer.path) }
        #expect(throws: RecordingError.self) { try RecordingReader(path: writer.path) }
        #expect(throws: RecordingError.self) { try RecordingReader.scan(path: writer.path, onMessage: { _ in }) }
        #expect("\(RecordingError.unsupportedFormat("f", "lnrr-pcapng/2"))".contains("lnrr-pcapng/2"))

        metadata.format = "lnrr-pcapng/1.3"
        metadata.sessionID = 2
        let minor = try RecordingWriter(directory: dir, metadata: metadata, sync: .message)
        try minor.close()
        #expect(try RecordingReader.readAll(path: minor.path).reader.problems.isEmpty)
    }

    @Test("a FIFO, a directory and /dev/null are refused at once", .timeLimit(.minutes(1)))
    func nonRegularFiles() throws {
        let dir = base.directory()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let fifo = dir + "/fifo.pcapng"
        #expect(mkfifo(fifo, 0o600) == 0)
        try FileManager.default.createDirectory(atPath: dir + "/dir.pcapng", withIntermediateDirectories: true)
        for (path, what) in [(fifo, "FIFO"), (dir + "/dir.pcapng", "directory"), ("/dev/null", "character device")] {
            let started = Date()
            do {
                _ = try RecordingReader.readAll(path: path)
                Issue.record("\(path) was read")
            } catch let error as RecordingError {
                #expect("\(error)".contains(what), "\(error)")
            }
            #expect(Date().timeIntervalSince(started) < 5)
        }
    }

    /// File-backed resident memory of this process in KiB (`RssFile`): what mapping a recording
    /// costs, and unlike `VmRSS` not moved by other suites' allocations running in parallel.
    static func rssKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("RssFile:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }

    @Test("reading a 96 MB recording keeps file-backed RSS bounded (no mapping of the whole file)")
    func boundedMemory() throws {
        let dir = base.directory()
        let writer = try RecordingWriter(directory: dir, metadata: base.metadata(), sync: .none)
        let payload = [UInt8](repeating: 0x5a, count: 2000)
        for i in 0..<48_000 { writer.message(payload, direction: i % 2 == 0 ? .aToB : .bToA, timestampNanos: UInt64(i)) }
        try writer.close()
        let before = Self.rssKiB()
        var peak = before
        var count = 0
        let reader = try RecordingReader.scan(path: writer.path, onMessage: { _ in
            count += 1
            if count % 4000 == 0 { peak = max(peak, Self.rssKiB()) }
        })
        var entries = 0
        _ = try RecordingReader.forEachEntry(path: writer.path) { _ in
            entries += 1
            if entries % 4000 == 0 { peak = max(peak, Self.rssKiB()) }
        }
        #expect(count == 48_000 && entries == 48_000 && reader.problems.isEmpty)
        #expect(peak - before < 16 * 1024, "RSS grew by \(peak - before) KiB reading a \(48_000 * 2068 / 1_000_000) MB file")
    }

    static func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
    }

    @Test("200 open recordings do not add 200 threads: a fixed pool writes them all", arguments: SyncMode.allCases)
    func threadsConstant(sync: SyncMode) throws {
        let dir = base.directory()
        // Warm up: the pool's threads start with the first writer.
        try RecordingWriter(directory: dir, metadata: base.metadata(0), sync: sync).close()
        let before = Self.threadCount()
        var writers: [RecordingWriter] = []
        for i in 1...200 {
            let writer = try RecordingWriter(directory: dir, metadata: base.metadata(i), sync: sync)
            writer.message([0x00, 0x12, UInt8(i % 256)], direction: .aToB, timestampNanos: UInt64(i))
            writer.kick()
            writers.append(writer)
        }
        let during = Self.threadCount()
        for writer in writers { #expect(try writer.close() == 1) }
        // Other suites run in parallel and may start a few threads of their own.
        #expect(during - before < 20, "threads: \(before) before, \(during) with 200 recordings open")
        for writer in writers {
            let (reader, entries) = try RecordingReader.readAll(path: writer.path)
            #expect(entries.count == 1 && reader.problems.isEmpty)
        }
    }

    @Test("--sync message: the batch is in the file when kick() returns, before the proxy delivers it")
    func messageModeWritesBeforeDelivery() throws {
        let writer = try RecordingWriter(directory: base.directory(), metadata: base.metadata(), sync: .message)
        var sizes: [Int] = []
        for round in 0..<50 {
            for i in 0..<5 {
                let bytes = [0x80, 0x01] + [UInt8](repeating: UInt8(i), count: 100)
                bytes.withUnsafeBytes {
                    writer.message($0, direction: .aToB, timestampNanos: UInt64(round * 5 + i), deferWake: true)
                }
            }
            writer.kick()
            // What a kill -9 now would leave: the file's size as the OS has it.
            var info = stat()
            stat(writer.path, &info)
            sizes.append(Int(info.st_size))
        }
        try writer.close()
        let (_, entries) = try RecordingReader.readAll(path: writer.path)
        var offsets = entries.map { if case .message(let m) = $0 { return m.offset } else { return 0 } }
        offsets.append(Int((try FileManager.default.attributesOfItem(atPath: writer.path)[.size] as? NSNumber)?.intValue ?? 0))
        // After round r, the file holds at least the 5(r+1) messages handed over so far.
        for (round, size) in sizes.enumerated() {
            #expect(size >= offsets[5 * (round + 1)], "round \(round): \(size) bytes on disk")
        }
    }

    @Test("the close event carries the per-direction counts the reader checks")
    func closeCounts() throws {
        let path = try base.write(base.directory())
        let (_, entries) = try RecordingReader.readAll(path: path)
        guard case .event(let close)? = entries.last else { Issue.record("no close"); return }
        let sample = base.sample()
        #expect(close.event.fields["recorded_a_to_b"] == .int(sample.filter { $0.0 == .aToB }.count))
        #expect(close.event.fields["recorded_b_to_a"] == .int(sample.filter { $0.0 == .bToA }.count))
    }
}

@Suite("recording writer memory")
struct WriterMemoryTests {
    @Test("a closed writer is freed, buffers and all, whatever the sync level", arguments: SyncMode.allCases)
    func freedAfterClose(sync: SyncMode) throws {
        let base = RecordingTests()
        let dir = base.directory()
        weak var weakWriter: RecordingWriter?
        try {
            let writer = try RecordingWriter(directory: dir, metadata: base.metadata(), sync: sync)
            writer.event(RecordingEvent(name: "handshake", fields: [:]), timestampNanos: 1)
            writer.message([0x00, 0x10, 0, 0], direction: .aToB, timestampNanos: 2)
            writer.kick()
            writer.event(RecordingEvent(name: "close", fields: ["reason": .string("eof")]), timestampNanos: 3)
            try writer.close()
            weakWriter = writer
        }()
        // The pool may still hold it in a queue for a moment (batch: 5 ms, none: 250 ms).
        let deadline = Date().addingTimeInterval(5)
        while weakWriter != nil && Date() < deadline { usleep(10_000) }
        #expect(weakWriter == nil)
    }
}

extension WriterMemoryTests {
    final class WeakWriter { weak var writer: RecordingWriter?; init(_ w: RecordingWriter) { writer = w } }

    @Test("2,000 recordings opened and closed: every writer freed, no thread added")
    func churn() throws {
        let base = RecordingTests()
        let dir = base.directory()
        try RecordingWriter(directory: dir, metadata: base.metadata(0), sync: .message).close()  // the pool starts
        let threads = ReliabilityTests.threadCount()
        var refs: [WeakWriter] = []
        for i in 1...2000 {
            let writer = try RecordingWriter(directory: dir, metadata: base.metadata(i), sync: SyncMode.allCases[i % 3])
            writer.event(RecordingEvent(name: "session-start", fields: ["a_address": .string("127.0.0.1:1")]), timestampNanos: 1)
            for j in 0..<4 { writer.message([0x00, 0x12, 0, 4, 0, 0], direction: j % 2 == 0 ? .aToB : .bToA, timestampNanos: 2) }
            writer.event(RecordingEvent(name: "close", fields: ["reason": .string("eof")]), timestampNanos: 3)
            #expect(try writer.close() == 4)
            refs.append(WeakWriter(writer))
        }
        let deadline = Date().addingTimeInterval(5)
        while refs.contains(where: { $0.writer != nil }) && Date() < deadline { usleep(10_000) }
        #expect(refs.filter { $0.writer != nil }.count == 0)
        // Other suites run in parallel and may start threads of their own; 2,000 would show.
        #expect(ReliabilityTests.threadCount() - threads < 20)
    }
}
