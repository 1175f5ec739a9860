/// Exit statuses scripts can rely on.
enum ExitStatus: Int32 {
    case success = 0
    /// The operation ran and the outcome is a failure (divergence, peer failed the connection, ...).
    case failure = 1
    /// Bad usage, unreadable input, connection errors.
    case usage = 2
}

/// An error the CLI reports as one line on stderr, with the exit status it implies.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var code: ExitStatus

    init(_ message: String, code: ExitStatus = .usage) {
        self.message = message
        self.code = code
    }

    var description: String { message }
}
