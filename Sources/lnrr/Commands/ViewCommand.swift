import ArgumentParser
import Foundation
import LNRecording

/// `lnrr view`: recordings as a ladder diagram in one self-contained HTML file.
struct ViewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "view",
        abstract: "Write a recording as a ladder diagram: one self-contained HTML file for the browser.",
        discussion: """
            a and b are the lifelines, lnrr stands between them; one arrow per message with its \
            name, type, size and time. Arrows lnrr made (injections, replacements) start at lnrr; \
            messages that were not delivered end there with a cross. Bands at the left show the \
            phase of the connection and of each channel (init, opening, channel, closing, closed), \
            with a line at each hand-over. Rule actions, hook verdicts and disconnects are marked. \
            Click an arrow (or Enter) for its decoded fields and hex.

            Keys: j/k or the arrow keys move, Enter opens or closes the details, / filters by type \
            (names, numbers, `custom`), n/N jump to the next/previous marked message.

            Several recordings of the same two nodes stack as reconnects, in the order they were \
            recorded. The page fetches nothing (it works from file:// and offline) and draws only \
            the rows in view, so it stays usable with 100,000 messages and more.

            Exit status: 0 the page was written (problems of a damaged recording are noted on \
            stderr and in the page), 2 a file could not be read or written.

            Examples:
              lnrr view recordings/examples/custommsg-during-closing.pcapng
              lnrr view s1.pcapng s2.pcapng -o session.html
            """
    )

    @Argument(help: ArgumentHelp("Recordings (.pcapng) of one pair of nodes.", valueName: "FILE"))
    var files: [String]

    @Option(name: [.short, .long], help: ArgumentHelp("Where to write the page (- for standard output); default: the first FILE with .html instead of .pcapng.", valueName: "OUT"))
    var output: String?

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one recording") }
    }

    func run() throws {
        let out = output ?? Self.defaultOutput(for: files[0])
        let recordings: [ViewData.Recording]
        do {
            recordings = try ViewData.ordered(paths: files)
        } catch {
            throw CLIError("lnrr view: \(error)")
        }
        let title = "lnrr view: " + recordings.map { ($0.path as NSString).lastPathComponent }.joined(separator: ", ")
        var problems: [[RecordingProblem]] = []
        do {
            try PageWriter.write(to: out) { page in
                problems = try ViewData.write(title: title, recordings: recordings, into: &page)
            }
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("lnrr view: \(error)")
        }
        for (recording, found) in zip(recordings, problems) {
            for problem in found { Terminal.standardError.write("note: \(recording.path): \(problem)") }
        }
        if out != "-" { Terminal.standardError.write("wrote \(out)") }
    }

    static func defaultOutput(for file: String) -> String {
        (file.hasSuffix(".pcapng") ? String(file.dropLast(7)) : file) + ".html"
    }
}
