import ArgumentParser
import LNWire

/// ArgumentParser runs a command's `validate()` before it looks for options it does not know, so
/// a misspelt flag (`replay ... --conect ID@...`) was reported as the semantic error its absence
/// causes ("give exactly one of --connect ... or --listen"). lnrr looks for unknown options
/// first, against the command's own option names, and names the nearest one.
enum UnknownOptions {
    struct Finding {
        var command: ParsableCommand.Type
        /// The subcommand names leading to `command`, e.g. ["rules", "check"].
        var path: [String]
        var option: String
        var suggestion: String?

        var message: String {
            "Unknown option '\(option)'" + (suggestion.map { ". Did you mean '\($0)'?" } ?? "")
        }
    }

    /// The first long option in `arguments` (without the program name) that the command they
    /// select does not have; nil when there is none, or when the command takes any argument.
    static func find(in arguments: [String], root: ParsableCommand.Type) -> Finding? {
        var command = root
        var path: [String] = []
        var known: Set<String>?
        for argument in arguments {
            if argument == "--" { break }
            if argument.hasPrefix("--") {
                let name = String(argument.split(separator: "=", maxSplits: 1).first ?? Substring(argument))
                if known == nil { known = longOptions(of: command) }
                guard let names = known else { return nil }
                if !names.contains(name) {
                    return Finding(command: command, path: path, option: name, suggestion: Suggestions.nearest(name, in: names, limit: 1).first)
                }
                continue
            }
            // A word naming a subcommand descends into it (before any option of that level).
            if !argument.hasPrefix("-"),
               let sub = command.configuration.subcommands.first(where: { $0._commandName == argument }) {
                command = sub
                path.append(argument)
                known = nil
            }
        }
        return nil
    }

    /// `--name` of every long option and flag of `command`, built-ins (`--help`, `--version`)
    /// included; nil when the command passes unknown options through to an argument.
    static func longOptions(of command: ParsableCommand.Type) -> Set<String>? {
        guard let help = try? JSONValue.parse(command._dumpHelp()),
              case .array(let arguments)? = help["command"]?["arguments"] else { return nil }
        var names: Set<String> = ["--help", "--version", "--generate-completion-script", "--experimental-dump-help"]
        for argument in arguments {
            if case .string(let strategy)? = argument["parsingStrategy"],
               ["allRemainingInput", "allUnrecognized", "passthrough", "unconditional", "captureForPassthrough"].contains(strategy),
               case .string("positional")? = argument["kind"] {
                return nil
            }
            guard case .array(let list)? = argument["names"] else { continue }
            for name in list {
                guard case .string(let kind)? = name["kind"], case .string(let text)? = name["name"] else { continue }
                if kind == "long" { names.insert("--" + text) }
            }
        }
        return names
    }
}
