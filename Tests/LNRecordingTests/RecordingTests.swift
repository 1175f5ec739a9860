import Foundation
import LNWire
import Testing
@testable import LNRecording

@Suite("pcapng recordings")
struct RecordingTests {
    func directory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("lnrr-rec-\(UUID().uuidString)").path
        return path
    }

    func metadata(_ id: Int = 1) -> SessionMetadata {
        SessionMetadata(lnrrVersion: "test", sessionID: id, startedNanos: 1_764_000_000_123_456_789,
                        nodeA: "02" + String(repeating: "ab", count: 32), nodeB: "03" + String(repeating: "cd", count: 32),
                        listen: "127.0.0.1:9735", upstream: "03cd@127.0.0.1:9736", transparent: true, syncMode: .message)
    }

    func sample() -> [(Direction, [UInt8], [String])] {
        (0..<300).map { i in
            let direction: Direction = i % 3 == 0 ? .bToA : .aToB
            let payload = (0..<(i * 7 % 1000)).map { UInt8(truncatingIfNeeded: $0 &+ i) }
            return (direction, [0x80, UInt8(i % 256)] + payload, i % 50 == 0 ? ["rule \"r\(i)\": mark", "phase"] : [])
        }
    }

    func write(_ dir: String, sync: SyncMode = .message) throws -> String {
        let writer = try RecordingWriter(directory: dir, metadata: metadata(), sync: sync)
        writer.event(RecordingEvent(name: "handshake", fields: ["side": .string("a"), "transparent": .bool(true)]), timestampNanos: 5)
        for (i, (direction, bytes, comments)) in sample().enumerated() {
            writer.message(bytes, direction: direction, timestampNanos: 1_000 + UInt64(i), comments: comments)
        }
        writer.event(RecordingEvent(name: "close", fields: ["reason": .string("eof"), "by": .string("a")]), timestampNanos: 99_999)
        #expect(try writer.close() == 300)
        return writer.path
    }

    @Test("CRC-32 check value")
    func crcCheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([]) == 0)
        // Values from zlib's crc32 (Python's zlib.crc32), which pcapng readers use too.
        #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
        #expect(CRC32.checksum((0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }) == 0x8902_161E)
    }

    @Test("CRC-32 agrees with the bit-at-a-time definition at every length and alignment, folded and by tables")
    func crcMatchesDefinition() {
        func reference(_ bytes: ArraySlice<UInt8>) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
            }
            return crc ^ 0xFFFF_FFFF
        }
        #if arch(x86_64)
        // Every x86-64 CPU lnrr runs on in practice has PCLMULQDQ: the folding path must be the one tested.
        #expect(CRC32.folds, "this CPU has no PCLMULQDQ/SSE4.1: only the table path ran")
        #endif
        var generator = SystemRandomNumberGenerator()
        let data = (0..<1100).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for offset in 0..<8 {
            for length in 0...(data.count - offset) where length < 300 || length % 61 == 0 {
                let slice = data[offset..<(offset + length)]
                let expected = reference(slice)
                #expect(slice.withUnsafeBytes { CRC32.checksum($0) } == expected, "offset \(offset), length \(length)")
                #expect(slice.withUnsafeBytes { CRC32.checksumByTables($0) } == expected, "tables: offset \(offset), length \(length)")
            }
        }
    }

    @Test("what is written reads back: messages, directions, comments, events, metadata; file is owner-only", arguments: SyncMode.allCases)
    func roundTrip(sync: SyncMode) throws {
        let dir = directory()
        let path = try write(dir, sync: sync)
        // 1764000000 s is 2025-11-24T16:00:00Z (python3 datetime.fromtimestamp(1764000000, timezone.utc)).
        #expect(path.hasSuffix("/20251124T160000Z_02ababab_03cdcdcd_0001.pcapng"))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let (reader, entries) = try RecordingReader.readAll(path: path)
        #expect(reader.metadata == metadata())
        #expect(reader.problems.isEmpty)
        let messages = entries.compactMap { if case .message(let m) = $0 { return m } else { return nil } }
        let events = entries.compactMap { if case .event(let e) = $0 { return e } else { return nil } }
        #expect(messages.map(\.bytes) == sample().map(\.1))
        #expect(messages.map(\.direction) == sample().map(\.0))
        #expect(messages.map(\.comments) == sample().map(\.2))
        #expect(messages.map(\.timestampNanos) == (0..<300).map { 1_000 + UInt64($0) })
        #expect(events.map(\.event.name) == ["handshake", "close"])
        #expect(events.last?.event.fields["reason"] == .string("eof"))
        #expect(events.first?.event.fields["transparent"] == .bool(true))
    }

    @Test("a file cut anywhere in its last blocks yields every complete message and reports the tail")
    func truncation() throws {
        let path = try write(directory())
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let (_, all) = try RecordingReader.readAll(path: path)
        let offsets = all.map { entry -> Int in
            switch entry { case .message(let m): return m.offset; case .event(let e): return e.offset }
        }
        let cutDir = directory()
        try FileManager.default.createDirectory(atPath: cutDir, withIntermediateDirectories: true)
        // Every cut point within the last three records.
        for cut in offsets[offsets.count - 3]..<data.count {
            let cutPath = cutDir + "/cut.pcapng"
            try data.prefix(cut).write(to: URL(fileURLWithPath: cutPath))
            let (reader, entries) = try RecordingReader.readAll(path: cutPath)
            let complete = offsets.filter { $0 < cut }.count - (offsets.contains(cut) ? 0 : 1)
            #expect(entries.count == complete, "cut at \(cut)")
            if offsets.contains(cut) {
                #expect(reader.problems.isEmpty, "cut at a block boundary \(cut)")
            } else {
                #expect(reader.problems == [.truncatedTail(offset: offsets[complete], bytes: cut - offsets[complete])], "cut at \(cut)")
            }
        }
    }

    @Test("a flipped data byte is reported with its offset and reading goes on")
    func checksumFailure() throws {
        let path = try write(directory())
        let (_, entries) = try RecordingReader.readAll(path: path)
        guard case .message(let victim) = entries[10] else { Issue.record("entry 10 is not a message"); return }
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[victim.offset + 28 + 3] ^= 0x40  // inside the packet data (block header 8 + EPB fields 20)
        try data.write(to: URL(fileURLWithPath: path))
        let (reader, again) = try RecordingReader.readAll(path: path)
        #expect(reader.problems == [.badChecksum(offset: victim.offset, index: victim.index)])
        #expect(again.count == entries.count)
    }

    @Test("never overwrites: a second recording with the same name gets a suffix")
    func noOverwrite() throws {
        let dir = directory()
        let first = try write(dir)
        let second = try RecordingWriter(directory: dir, metadata: metadata(), sync: .message)
        try second.close()
        #expect(first != second.path)
        #expect(try RecordingReader.readAll(path: first).entries.count == 302)
    }

    @Test("back-pressure: the watermark callback fires under load and nothing is lost")
    func backpressure() throws {
        let flips = LockedFlips()
        let writer = try RecordingWriter(directory: directory(), metadata: metadata(), sync: .message, onBackpressure: { flips.append($0) })
        writer.stallForTesting(true)  // a disk that cannot keep up
        let big = [UInt8](repeating: 7, count: 60_000)
        for i in 0..<400 {  // 24 MB, well past the 8 MiB high-water mark
            writer.message(big, direction: i % 2 == 0 ? .aToB : .bToA, timestampNanos: UInt64(i))
        }
        #expect(flips.values == [true])
        writer.stallForTesting(false)
        #expect(try writer.close() == 400)
        #expect(flips.values.first == true)
        #expect(flips.values.last == false)
        let (reader, entries) = try RecordingReader.readAll(path: writer.path)
        #expect(entries.count == 400 && reader.problems.isEmpty)
    }

    @Test("not a recording: clear errors")
    func notARecording() throws {
        let dir = directory()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("hello".utf8).write(to: URL(fileURLWithPath: dir + "/x.pcapng"))
        #expect(throws: RecordingError.self) { try RecordingReader.readAll(path: dir + "/x.pcapng") }
        #expect(throws: RecordingError.self) { try RecordingReader.readAll(path: dir + "/missing.pcapng") }
    }
}

final class LockedFlips: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Bool] = []
    func append(_ value: Bool) { lock.lock(); storage.append(value); lock.unlock() }
    var values: [Bool] { lock.lock(); defer { lock.unlock() }; return storage }
}
