import Foundation
import Logging

/// Checks `lnrr record` makes before it listens, so that a session is never accepted only to fail
/// for a reason known at start (issue #14, finding 8).
enum StartupChecks {
    /// File descriptors one recorded session holds: a's socket, b's socket, the recording.
    static let descriptorsPerSession = 3
    /// Descriptors kept for everything else: listeners, the control socket and its clients, hook
    /// processes, the event loops' own.
    static let descriptorsReserved = 64

    /// Raises the soft limit on open files to the hard limit and says how many sessions it allows.
    /// Returns the limit in force.
    @discardableResult
    static func raiseDescriptorLimit(logger: Logger, recording: Bool) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        let before = limit.rlim_cur
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let count = Int(clamping: limit.rlim_cur)
        let perSession = recording ? descriptorsPerSession : descriptorsPerSession - 1
        let sessions = max(0, (count - descriptorsReserved) / perSession)
        let raisedNote = before == limit.rlim_cur ? "" : " (raised from \(before))"
        logger.notice("open-file limit \(count)\(raisedNote): room for about \(sessions) concurrent sessions (\(perSession) descriptors each)")
        return count
    }

    /// Refuses an `--out` that cannot hold recordings: a file that is not a directory, a directory
    /// that cannot be created, or one where a file cannot be created (read-only, no permission).
    static func checkOutputDirectory(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw CLIError("--out \(path) is not a directory; recordings need a directory (it is created, mode 0700, when missing)")
            }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw CLIError("--out \(path): cannot create the directory: \(String(cString: strerror(errno == 0 ? EACCES : errno)))")
            }
        }
        // Try what a session will do: create a file there. access(2) would not do: root passes it
        // on a read-only filesystem's directory only to fail at open(2).
        let probe = (path as NSString).appendingPathComponent(".lnrr-write-check-\(getpid())")
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw CLIError("--out \(path): recordings cannot be created there: \(String(cString: strerror(errno)))")
        }
        close(fd)
        unlink(probe)
    }
}
