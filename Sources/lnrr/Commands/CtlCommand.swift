import ArgumentParser
import Foundation
import LNFileIO
import LNWire

/// `lnrr ctl`: the command-line client of `lnrr record --control`.
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Call a method on a running proxy's control socket (JSON-RPC 2.0); prints JSON.",
        discussion: """
            Methods:
              listsessions                                   sessions, node ids, phases, counts
              sendcustommsg node_id=ID msg=HEX [force=true]  like CLN's sendcustommsg: to node ID
              sendcustommsg session=N direction=a2b msg=HEX
              inject session=N direction=b2a msg=HEX         any message (or name=ping fields={...})
              disconnect session=N                           (or node_id=ID)
              addrule rule='{"name":"x","match":{"type":"ping"},"action":"drop"}'
              delrule name=x
              listrules
              subscribe [--count N]                          stream events as JSON lines
              subscribe count=N [timeout=MS]                 one answer holding the next N events

            Arguments are KEY=VALUE (VALUE read as JSON when it parses, else as a string) or one \
            JSON object. A direction is a2b or b2a (or 'a->b', 'b->a', quoted: unquoted, the shell \
            reads > as a redirection). Unknown parameters are errors, with the nearest known name.

            Exit status: 0 success; 1 the method ran and failed (no such session, not connected, \
            ...); 2 usage: unknown method or parameter, malformed value, or no proxy at the socket. \
            The JSON-RPC error codes are listed in docs/rules.md.

            Example:
              lnrr record ... --control /tmp/lnrr.sock &
              lnrr ctl --socket /tmp/lnrr.sock listsessions
            """
    )

    @Option(name: .long, help: ArgumentHelp("The control socket (default: $LNRR_CONTROL).", valueName: "PATH"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("With subscribe: exit after this many events.", valueName: "N"))
    var count: Int?

    @Argument(help: ArgumentHelp("The method.", valueName: "METHOD"))
    var method: String

    @Argument(help: ArgumentHelp("KEY=VALUE parameters, or one JSON object.", valueName: "ARGS"))
    var args: [String] = []

    func run() throws {
        guard let path = socket ?? ProcessInfo.processInfo.environment["LNRR_CONTROL"] else {
            throw CLIError("give --socket PATH (the --control of `lnrr record`) or set LNRR_CONTROL")
        }
        let params = try parameters()
        let fd = try Self.connect(path)
        defer { close(fd) }
        let request = JSONValue.object([("jsonrpc", .string("2.0")), ("id", .integer("1")), ("method", .string(method)), ("params", params)])
        try Self.send(fd, request.description + "\n")
        var reader = LineReader(fd: fd)
        var events = 0
        while let line = try reader.next() {
            // Answers are followed by a blank line (lightningd's framing); skip it.
            if line.allSatisfy(\.isWhitespace) { continue }
            guard let reply = try? JSONValue.parse(line) else { continue }
            if case .string("event")? = reply["method"] {
                Terminal.standardOutput.write((reply["params"] ?? .null).description)
                events += 1
                if let count, events >= count { return }
                continue
            }
            if let error = reply["error"] {
                Terminal.standardOutput.write(error.description)
                var message = "error"
                if case .string(let text)? = error["message"] { message = text }
                var code = 0
                if case .integer(let text)? = error["code"] { code = Int(text) ?? 0 }
                // JSON-RPC's own codes (-32768...-32000) mean the request was wrong: bad usage.
                throw CLIError("\(method): \(message)", code: (-32768 ... -32000).contains(code) ? .usage : .failure)
            }
            Terminal.standardOutput.write((reply["result"] ?? .null).description)
            if method != "subscribe" { return }
        }
        if method == "subscribe" { return }
        throw CLIError("the proxy closed the control connection without answering")
    }

    private func parameters() throws -> JSONValue {
        if args.count == 1, args[0].hasPrefix("{") {
            do { return try JSONValue.parse(args[0]) } catch { throw CLIError("ARGS: \(error)") }
        }
        var pairs: [(String, JSONValue)] = []
        for arg in args {
            guard let eq = arg.firstIndex(of: "=") else { throw CLIError("'\(arg)': parameters are KEY=VALUE") }
            let key = String(arg[..<eq]), raw = String(arg[arg.index(after: eq)...])
            // Hex and node ids stay strings even when they look like numbers.
            let keepString = ["msg", "node_id", "id", "rule", "yaml", "name", "direction"].contains(key)
            pairs.append((key, keepString ? .string(raw) : ((try? JSONValue.parse(raw)) ?? .string(raw))))
        }
        return .object(pairs)
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = Foundation.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CLIError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { close(fd); throw CLIError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw CLIError("cannot connect to \(path): \(why) (is `lnrr record --control \(path)` running?)")
        }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) throws {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw CLIError("write to the control socket failed: \(String(cString: strerror(errno)))") }
            bytes = bytes.dropFirst(n)
        }
    }

    struct LineReader {
        let fd: Int32
        var buffer: [UInt8] = []

        mutating func next() throws -> String? {
            while true {
                if let newline = buffer.firstIndex(of: 0x0a) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer.removeFirst(newline + 1)
                    return line
                }
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = chunk.withUnsafeMutableBytes { FileIO.read(fd, into: $0) }
                guard n > 0 else { return nil }
                buffer += chunk[..<n]
            }
        }
    }
}
