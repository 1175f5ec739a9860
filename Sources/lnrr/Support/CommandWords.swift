import ArgumentParser
import LNWire

/// Checks the command words of an invocation (`lnrr lst`, `lnrr help nosuch`, `lnrr keys nwe`)
/// before ArgumentParser parses it. ArgumentParser answers an unknown command word with the root
/// help and status 0 for `help`, and with a generic "unexpected argument" otherwise; lnrr says which
/// word is unknown, suggests the nearest command, and exits 2.
enum CommandWords {
    /// The error for the first word that names no command, or nil when every command word is known.
    static func check(_ arguments: [String], root: ParsableCommand.Type) -> CLIError? {
        var words = arguments[...]
        var viaHelp = false
        if words.first == "help" {
            viaHelp = true
            words = words.dropFirst()
        }
        var command = root
        var path = [root._commandName]
        while let word = words.first, !word.hasPrefix("-") {
            let subcommands = command.configuration.subcommands
            // A leaf command's words are its arguments; a command with a default subcommand
            // passes unknown words on to it.
            if subcommands.isEmpty || (command.configuration.defaultSubcommand != nil && !viaHelp) { return nil }
            if let next = subcommands.first(where: { names(of: $0).contains(word) }) {
                command = next
                path.append(word)
                words = words.dropFirst()
                continue
            }
            if word == "help" && !viaHelp { return nil }  // `lnrr keys help` is ArgumentParser's
            let candidates: [String] = subcommands.map { $0._commandName }
            let threshold = max(2, word.count / 3)
            var best: (name: String, distance: Int)?
            for name in candidates {
                let distance = editDistance(name, word)
                if distance <= threshold && distance < (best?.distance ?? Int.max) { best = (name, distance) }
            }
            let scope = path.joined(separator: " ")
            var message = "\(scope): unknown command '\(word)'"
            if let best {
                message += "; did you mean '\(best.name)'?"
            } else {
                message += "; the commands are \(candidates.joined(separator: ", "))"
            }
            message += " (see `\(scope) --help`)"
            return CLIError(message, code: .usage)
        }
        return nil
    }

    private static func names(of command: ParsableCommand.Type) -> [String] {
        [command._commandName] + command.configuration.aliases
    }
}
