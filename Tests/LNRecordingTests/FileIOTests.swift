import Foundation
import LNFileIO
import Testing

@Suite("descriptor I/O")
struct FileIOTests {
    @Test("writeAll gets 1 MiB through a 64 KiB pipe in many short writes, and read gives it back whole")
    func shortWrites() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let data = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let readEnd = fds[0]
        let reader = Thread {
            var got: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 10_000)
            while true {
                let n = chunk.withUnsafeMutableBytes { FileIO.read(readEnd, into: $0) }
                if n <= 0 { break }
                got += chunk[..<n]
            }
            close(readEnd)
            received.set(got)
        }
        reader.start()
        let result = data.withUnsafeBytes { FileIO.writeAll(fds[1], $0) }
        close(fds[1])
        #expect(result.written == data.count && result.errno == nil)
        #expect(received.wait() == data)
    }

    @Test("writeAll says how far it got and why it stopped")
    func failure() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        close(fds[0])
        signal(SIGPIPE, SIG_IGN)
        let result = [UInt8](repeating: 1, count: 100).withUnsafeBytes { FileIO.writeAll(fds[1], $0) }
        close(fds[1])
        #expect(result.written == 0 && result.errno == EPIPE)
    }
}

/// The bytes the reader thread got, handed to the test.
private let received = Handoff()

private final class Handoff: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: [UInt8]?

    func set(_ bytes: [UInt8]) {
        condition.lock()
        value = bytes
        condition.signal()
        condition.unlock()
    }

    func wait() -> [UInt8]? {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value
    }
}
