import Foundation

/// One wording for file problems everywhere in the CLI: `cannot read PATH: No such file or
/// directory`, the operating system's own text (what KeyFile, the keyring and the recording reader
/// say), never Foundation's "The file “x” couldn’t be opened because there is no such file."
enum FileProblem {
    /// The reason in `error`, as strerror words when it carries a POSIX code.
    static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSCocoaErrorDomain {
            switch CocoaError.Code(rawValue: ns.code) {
            case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
            case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
            case .fileWriteFileExists: return String(cString: strerror(EEXIST))
            case .fileReadInvalidFileName, .fileWriteInvalidFileName: return "invalid file name"
            case .fileReadCorruptFile, .fileReadInapplicableStringEncoding: return "not valid UTF-8 text"
            default: break
            }
        }
        return error.localizedDescription
    }

    /// `cannot read PATH: REASON`.
    static func cannotRead(_ path: String, _ error: Error, what: String = "") -> CLIError {
        // Foundation reports reading a folder as an unknown error; the OS words are clearer.
        var isDirectory: ObjCBool = false
        let why = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? String(cString: strerror(EISDIR)) : reason(error)
        return CLIError("cannot read \(what.isEmpty ? "" : what + " ")\(path): \(why)")
    }

    /// Creates the folder `path` and any missing parents, owner-only (0700) as recordings and key
    /// folders hold secrets; an existing folder is left as it is.
    static func makeFolder(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw CLIError("cannot create folder \(path): a file of that name exists") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw CLIError("cannot create folder \(path): \(reason(error))")
        }
    }
}
