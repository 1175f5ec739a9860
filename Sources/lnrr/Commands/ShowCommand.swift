import ArgumentParser
import Foundation
import LNProxy
import LNRecording
import LNTransport
import LNWire

/// Options shared by `lnrr show` and the demo's printout.
struct ShowOptions {
    var json = false
    var metadata = false
    var types: Set<UInt16>? = nil
    var direction: Direction? = nil
    var decode = false
}

/// `lnrr show`: one line per message of a recording.
struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print a recording, one line per message.",
        discussion: """
            Each line: the message's index in the recording (`#3`, as notes like `replacement \
            for #3` and `message=3` cite it), time since the session started, direction, type \
            number and name (`custom` for 32768-65535, `unknown-odd`/`unknown-even` for other \
            unknown types), length, the first bytes in hex, and annotations: what rules did, and \
            the custommsg hook's verdict. The text of `error` and `warning` messages is shown \
            when printable, and init's `remote_addr` as an address (--json keeps the hex). \
            Session events (handshakes, the close and its reason) appear as `--` lines, and so \
            do phase changes of each channel (`-- 6a0e..12bd: opening -> channel --`).

            --json prints one object per line with the full hex, for scripts:
              {"i":0,"t_ns":1200,"ts_ns":...,"dir":"a->b","type":16,"name":"init","len":6,"hex":"0010..."}

            A recording cut short (lnrr killed) shows every complete message and reports the \
            truncated tail; a message whose checksum fails, or that has no readable checksum, is \
            flagged (`"checksum_ok":false`); messages missing from a direction (gaps in the packet \
            ids) are reported with their count; a recording whose writing failed (a full disk) says \
            so. Exit status: 0 for a clean, verified file, 1 when problems were reported, 2 when \
            the file cannot be read (not a regular file, not pcapng, an unknown format version).

            Examples:
              lnrr show recordings/20261124T101502Z_03ab12cd_02ef34aa_0001.pcapng
              lnrr show --type custom,init --dir a2b FILE
              lnrr show --follow FILE
            """
    )

    @Argument(help: ArgumentHelp("A recording (.pcapng).", valueName: "FILE"))
    var file: String

    @Flag(name: .long, help: "One JSON object per line, with the full hex of every message.")
    var json = false

    @Flag(name: .long, help: "With --json, print the session metadata as the first line.")
    var metadata = false

    @Flag(name: .long, help: "Print each message's fields (BOLT names) under its line; with --json, add them as \"decoded\".")
    var decode = false

    @Flag(name: .long, help: "Keep printing messages as they are appended, until the session's close event or Ctrl-C.")
    var follow = false

    @Option(name: .long, help: ArgumentHelp("Only these types: numbers, BOLT names, or `custom`; comma-separated.", valueName: "TYPES"))
    var type: String?

    @Option(name: .long, help: ArgumentHelp("Only this direction: a2b or b2a (or 'a->b', 'b->a', quoted).", valueName: "DIR"))
    var dir: String?

    func run() async throws {
        var options = ShowOptions(json: json, metadata: metadata)
        options.decode = decode
        if let dir {
            guard let direction = Direction(parsing: dir) else { throw CLIError("--dir must be \(Direction.acceptedForms) (got '\(dir)')") }
            options.direction = direction
        }
        if let type { options.types = try Self.parseTypes(type) }
        let clean = try Self.render(path: file, options: options, follow: follow)
        if !clean { throw CLIError("", code: .failure) }
    }

    static func parseTypes(_ text: String) throws -> Set<UInt16> {
        var types = Set<UInt16>()
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if item == "custom" {
                types.formUnion(32768...65535)
            } else if let number = UInt16(item) {
                types.insert(number)
            } else if let number = MessageCatalogue.type(named: item) {
                types.insert(number)
            } else {
                throw CLIError("--type: '\(item)' is not a message type number, a BOLT message name or `custom`")
            }
        }
        return types
    }

    /// Prints a recording; returns false when the reader reported problems.
    @discardableResult
    static func render(path: String, options: ShowOptions, follow: Bool = false) throws -> Bool {
        var printer = ShowPrinter(options: options)
        var reader: RecordingReader
        do {
            reader = try RecordingReader(path: path)
        } catch {
            throw CLIError("\(error)")
        }
        if follow {
            // Start from the beginning: print what is there, then poll for more.
            var reading = try Self.fresh(path)  // threw above already if unreadable
            while true {
                var ended = false
                let metadata = reading.metadata ?? reader.metadata
                try reading.readNew { entry in
                    printer.entry(entry, metadata: metadata)
                    if case .event(let e) = entry, e.event.kind == .close { ended = true }
                }
                printer.flush(all: true)
                if ended { break }
                usleep(200_000)
            }
            return printer.finish(problems: reading.problems)
        }
        printer.begin(metadata: reader.metadata)
        let metadata = reader.metadata
        do {
            reader = try RecordingReader.forEachEntry(path: path) { printer.entry($0, metadata: metadata) }
        } catch {
            throw CLIError("\(error)")
        }
        return printer.finish(problems: reader.problems)
    }

    private static func fresh(_ path: String) throws -> RecordingReader {
        var reader = try RecordingReader(path: path)
        reader.rewind()
        return reader
    }
}

/// Formats entries for humans or as JSON lines; tracks phases to print their changes.
struct ShowPrinter {
    let options: ShowOptions
    var tracker = PhaseTracker()
    var startNanos: UInt64?
    var output = ""
    var metadataPrinted = false

    init(options: ShowOptions) {
        self.options = options
    }

    mutating func begin(metadata: SessionMetadata?) {
        guard let metadata, !metadataPrinted else { return }
        metadataPrinted = true
        startNanos = metadata.startedNanos
        if options.json {
            if options.metadata, let data = try? JSONEncoder.sorted.encode(metadata) {
                output += String(decoding: data, as: UTF8.self) + "\n"
            }
        } else {
            output += Terminal.paint("session \(metadata.sessionID) started \(metadata.started)\n", .dim)
            output += Terminal.paint("  a \(metadata.nodeA ?? "(handshake not completed)")\n  b \(metadata.nodeB)\n", .dim)
            output += Terminal.paint("  listen \(metadata.listen)  upstream \(metadata.upstream)  \(metadata.transparent ? "transparent" : "non-transparent")\n", .dim)
        }
    }

    /// Text lines held back so a custom message's line can carry its hook verdict, which is
    /// recorded after it (the hook answers later). Bounded: past `maxHeld` the oldest go out as
    /// they are and a late verdict gets its own `--` line.
    struct HeldLine {
        var index: Int?
        var text: String
        var awaitingHook: Bool
    }
    var held: [HeldLine] = []
    static let maxHeld = 256

    /// Adds a finished text line, holding it while an earlier custom message may still get its verdict.
    mutating func emit(_ text: String, index: Int? = nil, awaitingHook: Bool = false) {
        if held.isEmpty && !awaitingHook {
            output += text
            return
        }
        held.append(HeldLine(index: index, text: text, awaitingHook: awaitingHook))
        if held.count > Self.maxHeld { held[0].awaitingHook = false }
        releaseHeld(all: false)
    }

    /// Writes held lines from the front up to the first that still waits for its verdict (or all).
    mutating func releaseHeld(all: Bool) {
        var released = 0
        for line in held {
            if line.awaitingHook && !all { break }
            output += line.text
            released += 1
        }
        held.removeFirst(released)
    }

    /// Puts a hook verdict on its message's held line; false when that line is already out.
    mutating func attachHook(_ event: RecordingEvent) -> Bool {
        guard case .int(let index)? = event.fields["message"],
              let position = held.firstIndex(where: { $0.index == index && $0.awaitingHook }) else { return false }
        var verdict = "hook: "
        if case .string(let result)? = event.fields["result"] { verdict += result } else { verdict += "?" }
        if case .string(let payload)? = event.fields["payload"] { verdict += " \(payload)" }
        var text = held[position].text
        text.removeLast()  // the newline
        held[position].text = text + "  " + Terminal.paint(verdict, .yellow) + "\n"
        held[position].awaitingHook = false
        releaseHeld(all: false)
        return true
    }

    /// Human-readable extras for the message line: the text of error/warning, init's remote address.
    static func summary(_ bytes: [UInt8], type: UInt16?) -> String? {
        guard let type, type == 1 || type == 17 || type == 16 else { return nil }
        let decoded = WireCodec.decode(bytes)
        if type == 16 {
            return remoteAddress(in: decoded.fields).map { "remote_addr \($0)" }
        }
        guard case .bytes(let data)? = decoded.fields.first(where: { $0.name == "data" })?.value else { return nil }
        return printableText(data).map { "\"\($0)\"" }
    }

    /// `data` as text when it is printable UTF-8 (BOLT 1: error data is usually an ASCII string).
    static func printableText(_ data: [UInt8]) -> String? {
        guard !data.isEmpty, let text = String(validating: data, as: UTF8.self),
              text.unicodeScalars.allSatisfy({ $0 == "\n" || $0 == "\t" || ($0.value >= 0x20 && $0.value != 0x7f) }) else { return nil }
        return text
    }

    /// init's `remote_addr` TLV as HOST:PORT.
    static func remoteAddress(in fields: [DecodedField]) -> String? {
        for field in fields {
            guard case .tlvStream(let records) = field.value else { continue }
            for record in records where record.name == "remote_addr" {
                return BOLT7Address.describe(record.raw)
            }
        }
        return nil
    }

    /// Decoded fields as `--decode` shows them: error/warning `data` as quoted text when printable,
    /// `remote_addr` as an address.
    static func readable(_ fields: [DecodedField], type: UInt16) -> [DecodedField] {
        fields.map { field in
            var field = field
            switch field.value {
            case .bytes(let data) where field.name == "data" && (type == 1 || type == 17):
                if let text = printableText(data) { field.value = .text("\"\(text)\"") }
            case .tlvStream(var records) where type == 16:
                for i in records.indices where records[i].name == "remote_addr" {
                    if let address = BOLT7Address.describe(records[i].raw), var inner = records[i].fields, !inner.isEmpty {
                        inner[0].name = "address"
                        inner[0].value = .text(address)
                        records[i].fields = Array(inner.prefix(1))
                    }
                }
                field.value = .tlvStream(records)
            default: break
            }
            return field
        }
    }

    mutating func entry(_ entry: RecordingEntry, metadata: SessionMetadata?) {
        if !metadataPrinted { begin(metadata: metadata) }
        switch entry {
        case .message(let message):
            let start = startNanos ?? message.timestampNanos
            if startNanos == nil { startNanos = start }
            let observation = tracker.observe(message.bytes, direction: message.direction)
            if let direction = options.direction, message.direction != direction { return }
            let type = message.type
            if let types = options.types, !(type.map(types.contains) ?? false) { return }
            let offset = message.timestampNanos &- start
            if options.json {
                Self.writeJSON(message, offset: offset, observation: observation, decode: options.decode, into: &output)
                output += "\n"
            } else {
                let name = type.map(MessageCatalogue.displayName) ?? "runt"
                let time = String(format: "%10.6f", Double(offset) / 1e9)
                let arrow = message.direction == .aToB ? Terminal.paint("a->b", .cyan) : Terminal.paint("b->a", .magenta)
                let typeText = type.map { String($0) } ?? "-"
                let indexText = "#\(message.index)"
                var line = "\(indexText.leftPadded(5)) \(time)  \(arrow)  \(typeText.leftPadded(5)) \(name.rightPadded(26)) \(String(message.bytes.count).leftPadded(5))  \(HexString.encode(message.bytes.prefix(16)))\(message.bytes.count > 16 ? "…" : "")"
                if let summary = Self.summary(message.bytes, type: type) { line += "  " + summary }
                // Phase changes get their own `--` lines below; the recording's copies of them in
                // the comments would say the same thing twice.
                let notes = message.comments.filter { !$0.hasPrefix("phase ") }
                if !notes.isEmpty { line += "  " + Terminal.paint(notes.joined(separator: "; "), .yellow) }
                if !message.checksumOK { line += "  " + Terminal.paint("UNVERIFIED (checksum missing or mismatched)", .red) }
                var text = line + "\n"
                if options.decode, let type, MessageCatalogue.spec(of: type) != nil {
                    let decoded = WireCodec.decode(message.bytes)
                    var fields = ""
                    DecodedText.fields(Self.readable(decoded.fields, type: type), indent: "              ", into: &fields)
                    text += Terminal.paint(fields, .dim)
                    if let error = decoded.error { text += "              " + Terminal.paint("error: \(error)", .red) + "\n" }
                }
                for change in observation.changes {
                    text += Terminal.paint("-- \(change.description) --", .green) + "\n"
                }
                emit(text, index: message.index, awaitingHook: (type ?? 0) >= 32768)
            }
        case .event(let event):
            let start = startNanos ?? event.timestampNanos
            let offset = event.timestampNanos &- min(start, event.timestampNanos)
            if options.json {
                output += JSONLine.render(Self.json(event, offset: offset)) + "\n"
            } else {
                if event.event.name == "hook", attachHook(event.event) { break }
                let fields = event.event.fields.keys.sorted().map { key -> String in
                    switch event.event.fields[key]! {
                    case .string(let s): return "\(key)=\(s)"
                    case .int(let i): return "\(key)=\(i)"
                    case .bool(let b): return "\(key)=\(b)"
                    }
                }.joined(separator: " ")
                emit(Terminal.paint("      \(String(format: "%10.6f", Double(offset) / 1e9))  -- \(event.event.name) \(fields)", .dim) + "\n")
            }
        }
        if output.utf8.count > 1 << 16 { flush() }
    }

    /// One message as `lnrr show --json` prints it (without the newline); `lnrr view` embeds the
    /// same objects. Written field by field: this runs a million times for big recordings.
    static func writeJSON(_ message: RecordedMessage, offset: UInt64, observation: PhaseObservation, decode: Bool,
                          into output: inout String) {
        let type = message.type
        output += "{\"i\":" + String(message.index) + ",\"t_ns\":" + String(offset) + ",\"ts_ns\":" + String(message.timestampNanos)
        output += ",\"dir\":\"" + message.direction.rawValue + "\",\"type\":" + (type.map { String($0) } ?? "null")
        output += ",\"name\":\"" + (type.map(MessageCatalogue.displayName) ?? "runt") + "\",\"len\":" + String(message.bytes.count)
        output += ",\"hex\":\"" + HexString.encode(message.bytes) + "\",\"phase_before\":\"" + observation.before.rawValue
        output += "\",\"phase\":\"" + observation.after.rawValue + "\""
        var extra: [(String, JSONValue)] = []
        if let channel = observation.channel { extra.append(("channel", .string(channel.hex))) }
        if !message.comments.isEmpty { extra.append(("comments", .array(message.comments.map { .string($0) }))) }
        if !observation.changes.isEmpty { extra.append(("phase_changes", .array(observation.changes.map { .string($0.description) }))) }
        if !message.checksumOK { extra.append(("checksum_ok", .bool(false))) }
        for (key, value) in extra {
            output += ","
            JSONValue.writeString(key, into: &output)
            output += ":"
            value.write(into: &output)
        }
        if decode {
            // The decoded message goes last.
            output += ",\"decoded\":"
            WireCodec.decode(message.bytes).json.write(into: &output)
        }
        output += "}"
    }

    /// One session event as `lnrr show --json` prints it.
    static func json(_ event: RecordedEvent, offset: UInt64) -> JSONValue {
        var pairs: [(String, JSONValue)] = [("event", .string(event.event.name)), ("t_ns", .uint(offset)), ("ts_ns", .uint(event.timestampNanos))]
        for key in event.event.fields.keys.sorted() {
            switch event.event.fields[key]! {
            case .string(let s): pairs.append((key, .string(s)))
            case .int(let i): pairs.append((key, .int(i)))
            case .bool(let b): pairs.append((key, .bool(b)))
            }
        }
        return .object(pairs)
    }

    /// Writes what is ready; `all` also releases lines held for a hook verdict (end of file, or
    /// each poll of --follow, where waiting would stall the display).
    mutating func flush(all: Bool = false) {
        if all { releaseHeld(all: true) }
        guard !output.isEmpty else { return }
        Terminal.standardOutput.write(output, newline: false)
        output = ""
    }

    /// Prints what is left and the problems; true when there were none.
    mutating func finish(problems: [RecordingProblem]) -> Bool {
        if options.json {
            for problem in problems {
                output += JSONLine.render(.object([("problem", .string(problem.description))])) + "\n"
            }
        }
        flush(all: true)
        for problem in problems {
            Terminal.standardError.write("lnrr show: \(problem)")
        }
        return problems.isEmpty
    }
}

/// BOLT 7 address descriptors (as in init's `remote_addr`), printed the way lnrr prints every
/// address: `127.0.0.1:9735`, `[::1]:9735`.
enum BOLT7Address {
    /// HOST:PORT of one descriptor; nil when the bytes are not one.
    static func describe(_ bytes: [UInt8]) -> String? {
        guard let kind = bytes.first else { return nil }
        let body = Array(bytes.dropFirst())
        func port(_ at: Int) -> Int { Int(body[at]) << 8 | Int(body[at + 1]) }
        switch kind {
        case 1 where body.count == 6:
            return HostPort(host: body[0..<4].map(String.init).joined(separator: "."), port: port(4)).description
        case 2 where body.count == 18:
            let groups = stride(from: 0, to: 16, by: 2).map { String(Int(body[$0]) << 8 | Int(body[$0 + 1]), radix: 16) }
            return HostPort(host: compressIPv6(groups), port: port(16)).description
        case 4 where body.count == 37:
            return HostPort(host: base32(Array(body[0..<35])) + ".onion", port: port(35)).description
        case 5 where body.count >= 3 && Int(body[0]) == body.count - 3:
            guard let host = String(validating: body[1..<(body.count - 2)], as: UTF8.self) else { return nil }
            return HostPort(host: host, port: port(body.count - 2)).description
        default:
            return nil
        }
    }

    /// RFC 5952 text: the longest run of two or more zero groups becomes `::`.
    static func compressIPv6(_ groups: [String]) -> String {
        var best = (start: -1, length: 0)
        var i = 0
        while i < groups.count {
            guard groups[i] == "0" else { i += 1; continue }
            var j = i
            while j < groups.count && groups[j] == "0" { j += 1 }
            if j - i > best.length && j - i >= 2 { best = (i, j - i) }
            i = j
        }
        guard best.start >= 0 else { return groups.joined(separator: ":") }
        let head = groups[..<best.start].joined(separator: ":")
        let tail = groups[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }

    static func base32(_ bytes: [UInt8]) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var out = "", buffer = 0, bits = 0
        for byte in bytes {
            buffer = buffer << 8 | Int(byte)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[(buffer >> (bits - 5)) & 31])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[(buffer << (5 - bits)) & 31]) }
        return out
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
    func rightPadded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
