/// A `HOST:PORT` address (`[::1]:9735` for IPv6). The port is required.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`; `defaultPort` makes the port optional.
    public init(parsing text: String, defaultPort: Int? = nil) throws {
        let (host, port) = try Self.split(text, defaultPort: defaultPort)
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    static func split(_ text: String, defaultPort: Int?) throws -> (String, Int) {
        guard !text.isEmpty else { throw AddressError.malformed(text, "empty address") }
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw AddressError.malformed(text, "missing ']' after an IPv6 address") }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.first == ":" else { throw AddressError.malformed(text, "expected ':PORT' after ']'") }
                portText = rest.dropFirst()
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            guard !host.contains(":") else {
                throw AddressError.malformed(text, "write IPv6 addresses in brackets: [::1]:9735")
            }
            portText = text[text.index(after: colon)...]
        } else {
            host = Substring(text)
        }
        guard !host.isEmpty else { throw AddressError.malformed(text, "missing host") }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "_" || $0 == "%" }) else {
            throw AddressError.malformed(text, "'\(host)' is not a host name or IP address")
        }
        let port: Int
        if let portText {
            guard let value = Int(portText), (0...65535).contains(value) else {
                throw AddressError.malformed(text, "port must be a number from 0 to 65535")
            }
            port = value
        } else if let defaultPort {
            port = defaultPort
        } else {
            throw AddressError.malformed(text, "missing :PORT")
        }
        return (String(host), port)
    }
}

/// A Lightning peer address in the ecosystem's `NODEID@HOST:PORT` form (port defaults to 9735).
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    /// BOLT 7's default port.
    public static let defaultPort = 9735

    public var nodeID: NodeID
    public var host: String
    public var port: Int

    public init(nodeID: NodeID, host: String, port: Int = PeerAddress.defaultPort) {
        self.nodeID = nodeID
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws {
        guard let at = text.firstIndex(of: "@") else {
            throw AddressError.malformed(text, "expected NODEID@HOST[:PORT]")
        }
        do {
            nodeID = try NodeID(hex: String(text[..<at]))
        } catch {
            throw AddressError.malformed(text, "the node id before '@' must be 66 hex characters (a compressed public key)")
        }
        (host, port) = try HostPort.split(String(text[text.index(after: at)...]), defaultPort: Self.defaultPort)
    }

    public var hostPort: HostPort { HostPort(host: host, port: port) }

    public var description: String { "\(nodeID.hex)@\(hostPort)" }
}

/// A malformed address, with what is wrong.
public enum AddressError: Error, Equatable, CustomStringConvertible {
    case malformed(String, String)

    public var description: String {
        switch self {
        case .malformed(let text, let why):
            let shown = redactingSecrets(text)
            let hint = shown == text ? "" : "; a 64-hex-character value is a node secret's length: give the node id instead (`lnrr keys id FILE` prints it)"
            return "bad address '\(shown)': \(why)\(hint)"
        }
    }
}

/// `text` with every run of hex digits that could be a secret replaced by `<N hex characters, not
/// shown>`: a node secret pasted where a node id belongs must never be echoed to a terminal or a log.
/// Runs of 66 (a node id's length) and runs shorter than 32 are shown as they are.
func redactingSecrets(_ text: String) -> String {
    var out = ""
    var run = ""
    func flush() {
        if run.count >= 32 && run.count != 66 { out += "<\(run.count) hex characters, not shown>" } else { out += run }
        run = ""
    }
    for c in text {
        if c.isHexDigit { run.append(c) } else { flush(); out.append(c) }
    }
    flush()
    return out
}
