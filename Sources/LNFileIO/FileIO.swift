#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Reading and writing a raw file descriptor with the retries POSIX leaves to the caller
/// (`EINTR`, short writes): the one implementation for every place lnrr does its own descriptor
/// I/O (recordings, key files, the terminal, `lnrr view`'s page, the control socket client).
public enum FileIO {
    /// Writes all of `bytes` to `fd`, going on after a signal (`EINTR`) and after short writes.
    /// Returns how many bytes were written and, when it stopped before the end, why: the `errno`
    /// of the failed call (`EIO` for a write that wrote nothing).
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> (written: Int, errno: Int32?) {
        var done = 0
        while done < bytes.count {
            let n = systemWrite(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return (done, errno)
            }
            if n == 0 { return (done, EIO) }
            done += n
        }
        return (done, nil)
    }

    /// One `read(2)` of up to `buffer.count` bytes, repeated if a signal interrupts it: the number
    /// of bytes read (0 at the end of the file), or -1 with `errno` set.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        while true {
            let n = systemRead(fd, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }
}

// The C library's read(2) and write(2), named apart from FileIO's own; from Glibc on Linux (the
// platform lnrr is built and tested on) or Darwin.
@inline(__always)
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.read(fd, buffer, count)
    #else
    Darwin.read(fd, buffer, count)
    #endif
}

@inline(__always)
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.write(fd, buffer, count)
    #else
    Darwin.write(fd, buffer, count)
    #endif
}
