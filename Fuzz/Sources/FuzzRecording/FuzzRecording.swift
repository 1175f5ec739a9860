#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LNRecording

/// The recording reader on arbitrary file contents (recordings are shared between people and can
/// be damaged or hostile). The input is written to a file, because the reader's public API reads
/// files, then read the three ways lnrr reads recordings: `readAll` (show, replay), `init` +
/// `readNew` (`show --follow`) and `scan` (list). Property: each returns or throws, never crashes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecording(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "cannot write \(path)")
    var written = 0
    while written < input.count {
        let n = write(fd, input.baseAddress! + written, input.count - written)
        precondition(n > 0, "cannot write \(path)")
        written += n
    }
    close(fd)

    if let (_, entries) = try? RecordingReader.readAll(path: path) {
        _ = entries.count
    }
    if var reader = try? RecordingReader(path: path) {
        try? reader.readNew { _ in }
    }
    var messages = 0
    _ = try? RecordingReader.scan(path: path, onMessage: { _ in messages += 1 })
    return 0
}

/// One scratch file per process, on tmpfs when there is one (a fuzzer writes it millions of times).
let path: String = {
    let directory = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    return "\(directory)/lnrr-fuzz-recording-\(getpid()).pcapng"
}()
