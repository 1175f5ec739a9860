import LNTransportNIO
import LNWire
import NIOCore

/// The one line every long-running command that listens prints on stdout once its socket is bound,
/// with or without `--json`, so scripts (and the examples test) learn the real address, port 0
/// included:
///
///     {"event":"listening","address":"127.0.0.1:9735", ...command-specific fields}
///
/// `address` is `HOST:PORT`, `[HOST]:PORT` for IPv6.
enum ListeningLine {
    static func write(_ address: SocketAddress?, requested: String, _ extra: [(String, JSONValue)] = []) {
        let text = address?.hostPortDescription ?? requested
        Terminal.standardOutput.write(JSONLine.render(.object([("event", .string("listening")), ("address", .string(text))] + extra)))
    }
}
