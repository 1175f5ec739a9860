import Foundation
import LNFileIO

/// Reads a recording front to back through one buffer, so memory stays bounded whatever the file
/// size: the buffer holds the block being read plus some read-ahead, never the file.
///
/// Only regular files are accepted. The file is opened with `O_NONBLOCK` so that a FIFO or a device
/// given by mistake is refused at once instead of blocking `open(2)` until a writer appears.
final class BlockSource {
    /// How much is asked of `read(2)` at a time.
    static let readAhead = 256 * 1024
    /// The largest block held in memory. lnrr's own blocks stay far below it (a message is at most
    /// 65,535 bytes; a `hook` event with a replacement about twice that); larger blocks of other
    /// writers are skipped without being read.
    static let maxBlock = 4 * 1024 * 1024

    let path: String
    private let fd: Int32
    private var storage: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    /// The file offset of the first buffered byte.
    private(set) var position: Int

    /// Opens `path` for reading from `offset`; throws unless it is a readable regular file.
    init(path: String, at offset: Int = 0) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw RecordingError.cannotRead(path, String(cString: strerror(errno))) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let why = String(cString: strerror(errno))
            Foundation.close(fd)
            throw RecordingError.cannotRead(path, why)
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            Foundation.close(fd)
            let what: String
            switch kind {
            case S_IFDIR: what = "a directory"
            case S_IFIFO: what = "a FIFO (named pipe)"
            case S_IFCHR: what = "a character device"
            case S_IFBLK: what = "a block device"
            case S_IFSOCK: what = "a socket"
            default: what = "not a regular file"
            }
            throw RecordingError.notARecording(path, "it is \(what); recordings are regular files")
        }
        self.fd = fd
        position = offset
        if offset > 0 { lseek(fd, off_t(offset), SEEK_SET) }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        storage = .allocate(byteCount: Self.readAhead, alignment: 8)
    }

    deinit {
        Foundation.close(fd)
        storage.deallocate()
    }

    /// Bytes buffered from `position`.
    var buffered: Int { end - start }

    /// The buffered bytes from `position` (valid until the next call that moves or fills the buffer).
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[start..<end]) }

    /// Makes at least `count` bytes available from `position`; false when the file ends first.
    func ensure(_ count: Int) throws -> Bool {
        if end - start >= count { return true }
        if count > storage.count - start {
            if count > storage.count {
                // Grow (bounded by maxBlock through the callers' checks) and keep what is buffered.
                let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, storage.count * 2), alignment: 8)
                bigger.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: end - start)
                storage.deallocate()
                storage = bigger
            } else {
                memmove(storage.baseAddress!, storage.baseAddress! + start, end - start)
            }
            end -= start
            start = 0
        }
        while end - start < count {
            let n = FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: storage[end...]))
            if n < 0 { throw RecordingError.cannotRead(path, String(cString: strerror(errno))) }
            if n == 0 { return false }
            end += n
        }
        return true
    }

    /// Moves past `count` bytes, reading none of them that are not buffered yet.
    func skip(_ count: Int) {
        if count <= end - start {
            start += count
        } else {
            lseek(fd, off_t(position + count), SEEK_SET)
            start = 0
            end = 0
        }
        position += count
    }

    /// Reads 4 bytes at an absolute offset without disturbing the stream (a skipped block's trailer).
    func u32(at offset: Int) -> UInt32? {
        var value: UInt32 = 0
        let n = withUnsafeMutableBytes(of: &value) { pread(fd, $0.baseAddress!, 4, off_t(offset)) }
        return n == 4 ? UInt32(littleEndian: value) : nil
    }

    /// Whether the file holds at least `count` bytes from `position` (for a skipped block).
    func fileHolds(_ count: Int) -> Bool {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return false }
        return Int(info.st_size) - position >= count
    }
}
