import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LNFileIO

/// Output helpers: colour only when writing to a terminal and `NO_COLOR` is unset.
enum Terminal {
    struct Stream: Sendable {
        let fd: Int32

        /// Writes `text` followed by a newline, bypassing stdio buffering interleaving issues.
        func write(_ text: String, newline: Bool = true) {
            var line = text
            if newline { line += "\n" }
            // A failed write (a closed pipe) is not worth a second error: the line is lost.
            _ = line.withUTF8 { FileIO.writeAll(fd, UnsafeRawBufferPointer($0)) }
        }

        var isTTY: Bool { isatty(fd) == 1 }
    }

    static let standardOutput = Stream(fd: STDOUT_FILENO)
    static let standardError = Stream(fd: STDERR_FILENO)

    /// Whether stdout gets ANSI colour.
    static let colourOnStdout: Bool = standardOutput.isTTY && ProcessInfo.processInfo.environment["NO_COLOR"] == nil

    enum Colour: String {
        case dim = "2", red = "31", green = "32", yellow = "33", blue = "34", magenta = "35", cyan = "36"
    }

    /// `text` wrapped in an ANSI colour when stdout is a terminal, as is otherwise.
    static func paint(_ text: String, _ colour: Colour) -> String {
        colourOnStdout ? "\u{1B}[\(colour.rawValue)m\(text)\u{1B}[0m" : text
    }
}

