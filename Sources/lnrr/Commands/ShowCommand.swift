import ArgumentParser
import Foundation
import LNProxy
import LNRecording
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
            Each line: time since the session started, direction (a->b or b->a), type number and \
            name (`custom` for 32768-65535, `unknown-odd`/`unknown-even` for other unknown types), \
            length, the first bytes in hex, and annotations. Session events (handshakes, the close \
            and its reason) appear as `--` lines, and so do phase changes of each channel \
            (`-- 6a0e..12bd: opening -> channel --`).

            --json prints one object per line with the full hex, for scripts:
              {"i":0,"t_ns":1200,"ts_ns":...,"dir":"a->b","type":16,"name":"init","len":6,"hex":"0010..."}

            A recording cut short (lnrr killed) shows every complete message and reports the \
            truncated tail; a message whose checksum fails is flagged. Exit status: 0 for a clean \
            file, 1 when problems were reported, 2 when the file cannot be read.

            Examples:
              lnrr show recordings/20261124T101502Z_03ab12cd_02ef34aa_0001.pcapng
              lnrr show --type custom,init --dir a->b FILE
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

    @Option(name: .long, help: ArgumentHelp("Only this direction: a->b or b->a.", valueName: "DIR"))
    var dir: String?

    func run() async throws {
        var options = ShowOptions(json: json, metadata: metadata)
        options.decode = decode
        if let dir {
            guard let direction = Direction(rawValue: dir) else { throw CLIError("--dir must be a->b or b->a (got '\(dir)')") }
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
            var reading = try Self.fresh(path)
            while true {
                var ended = false
                let metadata = reading.metadata ?? reader.metadata
                try reading.readNew { entry in
                    printer.entry(entry, metadata: metadata)
                    if case .event(let e) = entry, e.event.name == "close" { ended = true }
                }
                printer.flush()
                if ended { break }
                usleep(200_000)
            }
            return printer.finish(problems: reading.problems)
        }
        printer.begin(metadata: reader.metadata)
        let metadata = reader.metadata
        reader = try RecordingReader.forEachEntry(path: path) { printer.entry($0, metadata: metadata) }
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
                var line = "\(time)  \(arrow)  \(typeText.leftPadded(5)) \(name.rightPadded(26)) \(String(message.bytes.count).leftPadded(5))  \(Hex.encode(message.bytes.prefix(16)))\(message.bytes.count > 16 ? "…" : "")"
                if !message.comments.isEmpty { line += "  " + Terminal.paint(message.comments.joined(separator: "; "), .yellow) }
                if !message.checksumOK { line += "  " + Terminal.paint("CHECKSUM MISMATCH", .red) }
                output += line + "\n"
                if options.decode, type.map({ MessageCatalogue.spec(of: $0) != nil }) ?? false {
                    let decoded = WireCodec.decode(message.bytes)
                    var fields = ""
                    DecodedText.fields(decoded.fields, indent: "              ", into: &fields)
                    output += Terminal.paint(fields, .dim)
                    if let error = decoded.error { output += "              " + Terminal.paint("error: \(error)", .red) + "\n" }
                }
                for change in observation.changes {
                    output += Terminal.paint("-- \(change.description) --", .green) + "\n"
                }
            }
        case .event(let event):
            let start = startNanos ?? event.timestampNanos
            let offset = event.timestampNanos &- min(start, event.timestampNanos)
            if options.json {
                output += JSONLine.render(Self.json(event, offset: offset)) + "\n"
            } else {
                let fields = event.event.fields.keys.sorted().map { key -> String in
                    switch event.event.fields[key]! {
                    case .string(let s): return "\(key)=\(s)"
                    case .int(let i): return "\(key)=\(i)"
                    case .bool(let b): return "\(key)=\(b)"
                    }
                }.joined(separator: " ")
                output += Terminal.paint("\(String(format: "%10.6f", Double(offset) / 1e9))  -- \(event.event.name) \(fields)", .dim) + "\n"
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
        output += ",\"hex\":\"" + Hex.encode(message.bytes) + "\",\"phase_before\":\"" + observation.before.rawValue
        output += "\",\"phase\":\"" + observation.after.rawValue + "\""
        var extra: [(String, JSONLine.Value)] = []
        if let channel = observation.channel { extra.append(("channel", .string(channel.hex))) }
        if !message.comments.isEmpty { extra.append(("comments", .array(message.comments.map { .string($0) }))) }
        if !observation.changes.isEmpty { extra.append(("phase_changes", .array(observation.changes.map { .string($0.description) }))) }
        if !message.checksumOK { extra.append(("checksum_ok", .bool(false))) }
        for (key, value) in extra {
            output += ","
            JSONLine.writeString(key, into: &output)
            output += ":"
            JSONLine.write(value, into: &output)
        }
        if decode {
            // The decoded message goes last.
            output += ",\"decoded\":"
            WireCodec.decode(message.bytes).json.write(into: &output)
        }
        output += "}"
    }

    /// One session event as `lnrr show --json` prints it.
    static func json(_ event: RecordedEvent, offset: UInt64) -> JSONLine.Value {
        var pairs: [(String, JSONLine.Value)] = [("event", .string(event.event.name)), ("t_ns", .uint(offset)), ("ts_ns", .uint(event.timestampNanos))]
        for key in event.event.fields.keys.sorted() {
            switch event.event.fields[key]! {
            case .string(let s): pairs.append((key, .string(s)))
            case .int(let i): pairs.append((key, .int(i)))
            case .bool(let b): pairs.append((key, .bool(b)))
            }
        }
        return .object(pairs)
    }

    mutating func flush() {
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
        flush()
        for problem in problems {
            Terminal.standardError.write("lnrr show: \(problem)")
        }
        return problems.isEmpty
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
