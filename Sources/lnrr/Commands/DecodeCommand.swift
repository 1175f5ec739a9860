import ArgumentParser
import Foundation
import LNWire

/// `lnrr decode`: one message, field by field.
struct DecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode Lightning messages (hex of the 2-byte type and payload) into named fields.",
        discussion: """
            Field names are the BOLTs' own (funding_satoshis, short_channel_id, ...). TLV records \
            are named when known and kept as type + hex otherwise; feature bits get their BOLT 9 \
            names. A malformed message shows every field that decoded, where and why decoding \
            stopped, and the undecoded rest.

            With no HEX argument, reads one hex message per line from standard input.

            Exit status: 0 when every message decoded completely, 1 when one stopped early, 2 for \
            input that is not hex.

            Examples:
              lnrr decode 00120004000200aa00bb
              lnrr decode --json 001000000000
              echo 00120004000200aa00bb | lnrr decode
            """
    )

    @Argument(help: ArgumentHelp("Messages as hex (type + payload).", valueName: "HEX"))
    var messages: [String] = []

    @Flag(name: .long, help: "One JSON object per message.")
    var json = false

    func run() throws {
        var inputs = messages
        if inputs.isEmpty {
            while let line = readLine() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if !trimmed.isEmpty { inputs.append(trimmed) }
            }
        }
        var incomplete = false
        var output = ""
        for input in inputs {
            guard let bytes = HexString.decode(input.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw CLIError("'\(input.prefix(40))' is not hex")
            }
            let decoded = WireCodec.decode(bytes)
            if !decoded.isComplete { incomplete = true }
            if json {
                decoded.json.write(into: &output)
                output += "\n"
            } else {
                output += DecodedText.render(decoded, length: bytes.count)
            }
            if output.utf8.count > 1 << 16 {
                Terminal.standardOutput.write(output, newline: false)
                output = ""
            }
        }
        Terminal.standardOutput.write(output, newline: false)
        if incomplete { throw CLIError("", code: .failure) }
    }
}

/// Human-readable rendering of decoded messages, shared with `lnrr show --decode`.
enum DecodedText {
    static func render(_ decoded: DecodedMessage, length: Int, indent: String = "") -> String {
        var out = "\(indent)\(decoded.name ?? decoded.kind.rawValue) (\(decoded.type)), \(length) bytes\n"
        fields(decoded.fields, indent: indent + "  ", into: &out)
        for warning in decoded.warnings { out += "\(indent)  note: \(warning)\n" }
        if let error = decoded.error { out += "\(indent)  " + Terminal.paint("error: \(error)", .red) + "\n" }
        if !decoded.rest.isEmpty { out += "\(indent)  rest: \(HexString.encode(decoded.rest))\n" }
        return out
    }

    static func fields(_ fields: [DecodedField], indent: String, into out: inout String) {
        for field in fields { value(field.name, field.value, indent: indent, into: &out) }
    }

    static func value(_ name: String, _ value: WireValue, indent: String, into out: inout String) {
        switch value {
        case .record(let sub):
            out += "\(indent)\(name):\n"
            fields(sub, indent: indent + "  ", into: &out)
        case .tlvStream(let records):
            out += "\(indent)\(name):\(records.isEmpty ? " (none)" : "")\n"
            for record in records {
                if let recordFields = record.fields, let recordName = record.name {
                    out += "\(indent)  \(recordName) (type \(record.type)):\n"
                    fields(recordFields, indent: indent + "    ", into: &out)
                } else {
                    out += "\(indent)  \(record.type) (unknown \(record.type % 2 == 0 ? "even" : "odd")): \(HexString.encode(record.raw))\n"
                }
            }
        case .array(let values) where values.contains(where: { if case .record = $0 { return true } else { return false } }):
            out += "\(indent)\(name): [\(values.count)]\n"
            for (i, v) in values.enumerated() { Self.value("[\(i)]", v, indent: indent + "  ", into: &out) }
        case .bytes(let b) where ["features", "globalfeatures", "type"].contains(name):
            let names = Features.describe(b)
            out += "\(indent)\(name): \(HexString.encode(b))\(names.isEmpty ? "" : "  [" + names.joined(separator: ", ") + "]")\n"
        default:
            let json = value.json(fieldName: name)
            if case .string(let text) = json {
                out += "\(indent)\(name): \(text)\n"
            } else {
                out += "\(indent)\(name): \(json)\n"
            }
        }
    }
}

/// `lnrr encode`: a message from its name and fields.
struct EncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Build a message from its BOLT name and fields (JSON); prints its hex.",
        discussion: """
            FIELDS_JSON is an object of the message's fields, in the form `lnrr decode --json` \
            prints (its "fields"). Length fields may be left out: they are computed. TLV streams are \
            objects keyed by record name.

            Examples:
              lnrr encode ping '{"num_pong_bytes": 4, "ignored": "abcd"}'
              lnrr encode init '{"globalfeatures": "", "features": "0200", "tlvs": {}}'
            """
    )

    @Argument(help: ArgumentHelp("The message's BOLT name (ping, WIRE_PING, ...).", valueName: "NAME"))
    var name: String

    @Argument(help: ArgumentHelp("The fields as a JSON object.", valueName: "FIELDS_JSON"))
    var fields: String = "{}"

    func run() throws {
        let value: JSONValue
        do { value = try JSONValue.parse(fields) } catch { throw CLIError("FIELDS_JSON: \(error)") }
        do {
            Terminal.standardOutput.write(HexString.encode(try WireCodec.encode(name: name, fields: value)))
        } catch {
            throw CLIError("\(error)")
        }
    }
}
