import ArgumentParser
import Foundation
import LNRelay
import LNReplay
import LNWire

/// `lnrr export`: write one side of a recording as a test that runs without lnrr.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write one side of a recording as a standalone test against a live node.",
        discussion: """
            The test takes the steps `lnrr replay` would: it plays the side given by --as, sends \
            what that side's peer received in the recording and asserts what the live node must \
            answer, matched by --match (type, fields with the ignore list, or exact). Phase changes \
            are comments; the recording's metadata is the docstring. Several recordings become one \
            test that reconnects between them.

            --format pytest: a pytest file on pyln-proto (Core Lightning's BOLT 8 code). The live \
            node is given by environment variables: LNRR_CONNECT=NODEID@HOST:PORT (dial it) or \
            LNRR_LISTEN=HOST:PORT (let it dial), LNRR_KEY=FILE (the played node's key), \
            LNRR_TIMEOUT=SECONDS; or by the same names as pytest options (--lnrr-connect ...) when \
            the file is loaded as a plugin with -p.

            Like replay, the test learns the live node's temporary_channel_id and channel_id and \
            sends them in place of the recorded ones (LNRR_BIND=off: the recorded ids). Signatures \
            cannot adapt: for --match fields or exact, start the live node deterministically \
            (docs/reproducing-bugs.md).

            Examples:
              lnrr export rec.pcapng --as a --format pytest -o test_handover.py
              LNRR_CONNECT=02ab...@127.0.0.1:9736 LNRR_KEY=keys/alice.key python -m pytest test_handover.py
              lnrr export rec.pcapng --as b --match fields --ignore-field funding_txid -o test_fundee.py
            """
    )

    @Argument(help: ArgumentHelp("Recordings of the same two nodes (several: one connection each).", valueName: "FILE"))
    var files: [String]

    @Option(name: .customLong("as"), help: ArgumentHelp("The recorded side the test plays: a (dialled the proxy) or b.", valueName: "a|b"))
    var side: String

    @Option(name: .long, help: ArgumentHelp("The kind of test: pytest.", valueName: "FORMAT"))
    var format: String = ExportFormat.pytest.rawValue

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the test (default: standard output).", valueName: "FILE"))
    var output: String?

    @Option(name: .long, help: ArgumentHelp("How the live node's messages must match: type, fields or exact.", valueName: "MODE"))
    var match: String = "type"

    @Option(name: .long, help: ArgumentHelp("Types neither sent nor expected: names, numbers, ranges, gossip, custom, or none.", valueName: "TYPES"))
    var ignore: String = "ping,pong,gossip"

    @Option(name: .long, help: ArgumentHelp("More field names --match fields leaves out (comma-separated).", valueName: "NAMES"))
    var ignoreField: String?

    func validate() throws {
        if files.isEmpty { throw ValidationError("give the recording to export") }
        if Side(rawValue: side) == nil { throw ValidationError("--as must be a or b: the recorded side the test plays") }
        if ExportFormat(rawValue: format) == nil {
            throw ValidationError("--format must be one of: " + ExportFormat.allCases.map(\.rawValue).joined(separator: ", "))
        }
        if MatchMode(rawValue: match) == nil { throw ValidationError("--match must be type, fields or exact") }
    }

    func run() throws {
        let side = Side(rawValue: self.side)!
        let filter: TypeFilter
        do { filter = try TypeFilter.parse(ignore) } catch { throw CLIError("\(error)") }
        var ignoredFields = MessageMatcher.defaultIgnoredFields
        for name in (ignoreField ?? "").split(separator: ",") { ignoredFields.insert(name.trimmingCharacters(in: .whitespaces)) }
        let segments: [ReplaySegment]
        do { segments = try ReplayPlan.segments(paths: files, side: side, ignore: filter) } catch { throw CLIError("\(error)") }
        let command = (["lnrr"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        let matcher = MessageMatcher(mode: MatchMode(rawValue: match)!, ignoredFields: ignoredFields)
        // The text is written as it is made (the steps stream from the recordings): to a file beside
        // `output`, renamed over it once complete, so a failure leaves no half-written test behind.
        func export(_ write: (String) throws -> Void) throws {
            switch ExportFormat(rawValue: format)! {
            case .pytest:
                try TestExport.pytest(segments: segments, side: side, matcher: matcher, ignore: filter, command: command, write: write)
            }
        }
        guard let output else {
            do {
                try export { FileHandle.standardOutput.write(Data($0.utf8)) }
            } catch { throw CLIError("\(error)") }
            return
        }
        let partial = output + ".partial-\(getpid())"
        guard FileManager.default.createFile(atPath: partial, contents: nil), let file = FileHandle(forWritingAtPath: partial) else {
            throw CLIError("cannot write \(output): cannot create \(partial): \(String(cString: strerror(errno)))")
        }
        do {
            try export { try file.write(contentsOf: Data($0.utf8)) }
            try file.close()
        } catch {
            try? file.close()
            unlink(partial)
            if error is ReplayError { throw CLIError("\(error)") }
            throw CLIError("cannot write \(output): \(error.localizedDescription)")
        }
        guard rename(partial, output) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(partial)
            throw CLIError("cannot write \(output): \(why)")
        }
        let steps = segments.reduce(0) { $0 + $1.stepCount }
        Terminal.standardError.write("wrote \(output): \(steps) steps from \(segments.count) recording\(segments.count == 1 ? "" : "s"), playing \(side.rawValue)")
    }
}
