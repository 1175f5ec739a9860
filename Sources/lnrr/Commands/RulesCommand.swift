import ArgumentParser
import Foundation
import LNWire
import LNRules

/// `lnrr rules`: check rule files, import Core Lightning dev-disconnect files.
struct RulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Check rule files and translate Core Lightning dev-disconnect files into rules.",
        discussion: "Rule files are documented in docs/rules.md. Use them with `lnrr record --rules FILE`.",
        subcommands: [Check.self, ImportDevDisconnect.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a rule file; print each problem as FILE:LINE:COLUMN: message.",
            discussion: """
                Unknown message names, phases, keys and fields get the nearest valid names as \
                suggestions. Injections of BOLT messages or unknown even types are allowed but warned \
                about, saying what the peer will do.

                Exit status: 0 when there are no errors (warnings allowed), 1 when there are errors, \
                2 when the file cannot be read.
                """
        )

        @Argument(help: ArgumentHelp("The rule file (YAML).", valueName: "FILE"))
        var file: String

        @Flag(name: .long, help: "One JSON object per problem.")
        var json = false

        func run() throws {
            let (rules, diagnostics): (RuleSet?, [RuleDiagnostic])
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch { throw FileProblem.cannotRead(file, error, what: "rule file") }
            (rules, diagnostics) = RuleParser.parse(yaml: text, file: file)
            for d in diagnostics {
                if json {
                    Terminal.standardOutput.write(JSONLine.object([
                        "file": .string(d.file), "line": .int(d.line), "column": .int(d.column),
                        "severity": .string(d.severity.rawValue), "message": .string(d.message),
                    ]))
                } else {
                    Terminal.standardOutput.write(d.severity == .error ? Terminal.paint(d.description, .red) : Terminal.paint(d.description, .yellow))
                }
            }
            guard let rules else { throw CLIError("", code: .failure) }
            if !json { Terminal.standardError.write("\(file): \(rules.rules.count) rule\(rules.rules.count == 1 ? "" : "s"), OK") }
        }
    }

    struct ImportDevDisconnect: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-dev-disconnect",
            abstract: "Turn a Core Lightning dev-disconnect file into an equivalent rule file.",
            discussion: """
                Lines like -WIRE_COMMITMENT_SIGNED, +WIRE_SHUTDOWN*2, $WIRE_..., 0WIRE_..., \
                xWIRE_PING*3, <WIRE_FUNDING_SIGNED and =WIRE_... become rules that fire once each, in \
                order, as if the file had been given to node a (or b with --as b). Prints the rule file \
                unless --out is given. A line that cannot be translated is an error naming its line.
                """
        )

        @Argument(help: ArgumentHelp("The dev-disconnect file.", valueName: "FILE"))
        var file: String

        @Option(name: .customLong("as"), help: ArgumentHelp("The node the file was given to: a or b.", valueName: "NODE"))
        var node: String = "a"

        @Option(name: .long, help: ArgumentHelp("Write the rule file here instead of printing it.", valueName: "FILE"))
        var out: String?

        func validate() throws {
            guard node == "a" || node == "b" else { throw ValidationError("--as must be a or b") }
        }

        func run() throws {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw FileProblem.cannotRead(file, error)
            }
            let yaml: String
            do { yaml = try DevDisconnect.translate(text, file: file, asNode: node) } catch {
                throw CLIError("\(file): \(error)", code: .failure)
            }
            if let out {
                do { try yaml.write(toFile: out, atomically: true, encoding: .utf8) } catch {
                    throw CLIError("cannot write \(out): \(FileProblem.reason(error))")
                }
            } else {
                Terminal.standardOutput.write(yaml, newline: false)
            }
        }
    }
}
