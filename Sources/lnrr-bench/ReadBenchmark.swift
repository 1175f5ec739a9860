// lnrr-bench group "read" (main.swift runs the groups; Benchmark.swift has the method).
import Foundation
import LNRecording

// MARK: 6. Reading a 1,000,000-message recording.

func readerBenchmarks(results: Results) throws {
    let directory = NSTemporaryDirectory() + "lnrr-bench-read-\(getpid())"
    let metadata = SessionMetadata(lnrrVersion: "bench", sessionID: 1, startedNanos: 1_764_000_000_000_000_000, nodeA: "02" + String(repeating: "a", count: 64),
                                   nodeB: "03" + String(repeating: "b", count: 64), listen: "x", upstream: "y", transparent: true, syncMode: .none)
    let writer = try RecordingWriter(directory: directory, metadata: metadata, sync: .none)
    var message = [UInt8](repeating: 7, count: 256)
    message[0] = 0x80; message[1] = 0x01
    let count = 1_000_000
    for i in 0..<count { writer.message(message, direction: i % 2 == 0 ? .aToB : .bToA, timestampNanos: UInt64(i) * 1000) }
    try writer.close()
    let path = writer.path
    let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0

    // The limit: reading the file's bytes, nothing else.
    var start = now()
    let fd = open(path, O_RDONLY)
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while read(fd, &buffer, buffer.count) > 0 {}
    close(fd)
    let rawRate = Double(count) / (now() - start)

    start = now()
    var seen = 0
    _ = try RecordingReader.scan(path: path, onMessage: { _ in seen += 1 })
    let scanRate = Double(count) / (now() - start)
    results.add(Row(name: "read + checksum a 1,000,000-message recording", value: scanRate, unit: "msg/s",
               baselineName: "read(2) of the same file", baseline: rawRate, target: ">= 1,000,000 msg/s"))

    let lnrr = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lnrr").path
    for (name, args) in [("lnrr list", ["list", directory]), ("lnrr show --json", ["show", "--json", path])] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: lnrr)
        process.arguments = args
        process.standardOutput = FileHandle.nullDevice
        start = now()
        try process.run()
        process.waitUntilExit()
        let rate = Double(count) / (now() - start)
        results.add(Row(name: "\(name), 1,000,000 messages (\(size / 1_000_000) MB)", value: rate, unit: "msg/s",
                   baselineName: "reader alone (scan)", baseline: scanRate, target: name == "lnrr list" ? ">= 1,000,000 msg/s" : "formatting-bound"))
    }
    try? FileManager.default.removeItem(atPath: directory)
}

/// `lnrr-bench read`.
struct ReadBenchmark: Benchmark {
    let name = "read"

    func run(results: Results) async throws {
        try readerBenchmarks(results: results)
    }
}
