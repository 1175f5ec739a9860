#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LNFileIO

/// Node key files: 64 hex characters and a newline, owner-only.
///
/// Key files are secrets: lnrr refuses to read one that group or others can read, because a test
/// node's key that leaks lets anyone impersonate it, and says how to fix the mode.
public enum KeyFile {
    /// Reads a key file. Surrounding whitespace is ignored.
    /// - Parameter allowInsecure: accept files with group/other permission bits (`--insecure-keys`).
    public static func read(path: String, allowInsecure: Bool = false) throws -> NodeSecret {
        var info = stat()
        guard stat(path, &info) == 0 else { throw KeyFileError.cannotOpen(path, errnoText()) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw KeyFileError.notAFile(path) }
        if !allowInsecure && info.st_mode & 0o077 != 0 {
            throw KeyFileError.insecurePermissions(path, mode: info.st_mode & 0o777)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw KeyFileError.cannotOpen(path, errnoText()) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var length = 0
        while length < buffer.count {
            let n = buffer.withUnsafeMutableBytes { FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[length...])) }
            guard n >= 0 else { throw KeyFileError.cannotOpen(path, errnoText()) }
            if n == 0 { break }
            length += n
        }
        defer { for i in 0..<length { buffer[i] = 0 } }
        guard length < buffer.count, let text = String(validating: buffer[..<length], as: UTF8.self) else {
            throw KeyFileError.malformed(path, "expected 64 hex characters")
        }
        do {
            return try NodeSecret(hex: text)
        } catch let error as KeyError {
            throw KeyFileError.malformed(path, error.description)
        }
    }

    /// Writes `secret` as a new key file with mode 0600. Never overwrites an existing file.
    public static func write(_ secret: NodeSecret, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { throw KeyFileError.exists(path) }
            throw KeyFileError.cannotCreate(path, errnoText())
        }
        defer { close(fd) }
        // The mode passed to open is filtered by the umask; make sure it is exactly 0600.
        fchmod(fd, 0o600)
        let line = Array((secret.hexForKeyFile + "\n").utf8)
        if let failed = line.withUnsafeBytes({ FileIO.writeAll(fd, $0) }).errno {
            throw KeyFileError.cannotCreate(path, String(cString: strerror(failed)))
        }
        guard fsync(fd) == 0 else { throw KeyFileError.cannotCreate(path, errnoText()) }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// Problems reading or writing key files. Messages name the file, never its content.
public enum KeyFileError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(String, String)
    case notAFile(String)
    case insecurePermissions(String, mode: mode_t)
    case malformed(String, String)
    case exists(String)
    case cannotCreate(String, String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let why): return "cannot read key file \(path): \(why)"
        case .notAFile(let path): return "key file \(path) is not a regular file"
        case .insecurePermissions(let path, let mode):
            return "key file \(path) is readable by group or others (mode \(String(mode, radix: 8))): run `chmod 600 \(path)`, or pass --insecure-keys to accept it"
        case .malformed(let path, let why): return "key file \(path) is malformed: \(why)"
        case .exists(let path): return "\(path) already exists; lnrr never overwrites a key file"
        case .cannotCreate(let path, let why): return "cannot create key file \(path): \(why)"
        }
    }
}
