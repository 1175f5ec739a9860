import ArgumentParser
import Foundation
import LNRecording
import LNWire

/// `lnrr list`: one line per recording in a folder.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List recordings: when, who, how many messages each way, how long, how they ended.",
        discussion: """
            Columns: start time (UTC), short node ids of a and b, messages a->b and b->a, duration, \
            how the session ended (the close event's reason, or `open` while it runs / if lnrr was \
            killed), the last phase reached, and the file name. A header row names them.

            Examples:
              lnrr list
              lnrr list recordings/ --json
            """
    )

    @Argument(help: ArgumentHelp("Folder of recordings.", valueName: "DIR"))
    var directory: String = "recordings"

    @Flag(name: .long, help: "One JSON object per recording.")
    var json = false

    struct Summary {
        var path: String
        var metadata: SessionMetadata?
        var aToB = 0
        var bToA = 0
        var firstNanos: UInt64?
        var lastNanos: UInt64?
        var ended = "open"
        var endDetail: String?
        var phase: ChannelPhase = .initializing
        var problems: [RecordingProblem] = []
    }

    func run() async throws {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".pcapng") }.sorted()
        } catch {
            throw FileProblem.cannotRead(directory, error)
        }
        var anyProblem = false
        if !json && !names.isEmpty { Terminal.standardOutput.write(Terminal.paint(Self.header, .dim)) }
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            let summary: Summary
            do {
                summary = try Self.summarize(path)
            } catch {
                Terminal.standardError.write("lnrr list: \(error)")
                anyProblem = true
                continue
            }
            if !summary.problems.isEmpty { anyProblem = true }
            print(summary, name: name)
        }
        if names.isEmpty && !json { Terminal.standardError.write("no recordings in \(directory)") }
        if anyProblem { throw CLIError("", code: .failure) }
    }

    /// Reads a recording through the zero-copy scan: counting, checksumming and phase tracking only.
    static func summarize(_ path: String) throws -> Summary {
        final class Box { var summary: Summary; var tracker = PhaseTracker(); init(_ s: Summary) { summary = s } }
        let box = Box(Summary(path: path))
        let reader = try RecordingReader.scan(path: path, onMessage: { m in
            if m.direction == .aToB { box.summary.aToB += 1 } else { box.summary.bToA += 1 }
            if box.summary.firstNanos == nil { box.summary.firstNanos = m.timestampNanos }
            box.summary.lastNanos = m.timestampNanos
            _ = box.tracker.observe(m.data, direction: m.direction)
        }, onEvent: { e in
            if box.summary.firstNanos == nil { box.summary.firstNanos = e.timestampNanos }
            box.summary.lastNanos = e.timestampNanos
            if e.event.kind == .close {
                if case .string(let reason)? = e.event.fields["reason"] { box.summary.ended = reason }
                if case .string(let detail)? = e.event.fields["detail"] { box.summary.endDetail = detail }
            }
        })
        var summary = box.summary
        summary.metadata = reader.metadata
        summary.problems = reader.problems
        summary.phase = box.tracker.channels.map(\.phase).max() ?? box.tracker.connectionPhase
        if !reader.problems.isEmpty && summary.ended == "open" { summary.ended = "truncated" }
        return summary
    }

    private func print(_ s: Summary, name: String) {
        let start = s.metadata?.startedNanos ?? s.firstNanos ?? 0
        let duration = Double((s.lastNanos ?? start) &- min(start, s.lastNanos ?? start)) / 1e9
        let a = s.metadata?.nodeA.map { String($0.prefix(8)) } ?? "unknown"
        let b = s.metadata.map { String($0.nodeB.prefix(8)) } ?? "unknown"
        if json {
            var pairs: [(String, JSONValue)] = [
                ("file", .string(s.path)),
                ("started", .string(s.metadata?.started ?? SessionMetadata.rfc3339(nanos: start))),
                ("node_a", s.metadata?.nodeA.map { .string($0) } ?? .null),
                ("node_b", s.metadata.map { .string($0.nodeB) } ?? .null),
                ("messages_a_to_b", .int(s.aToB)), ("messages_b_to_a", .int(s.bToA)),
                ("duration_s", .double(duration)), ("ended", .string(s.ended)),
                ("phase", .string(s.phase.rawValue)),
            ]
            if let detail = s.endDetail { pairs.append(("end_detail", .string(detail))) }
            if let transparent = s.metadata?.transparent { pairs.append(("transparent", .bool(transparent))) }
            if !s.problems.isEmpty { pairs.append(("problems", .array(s.problems.map { .string($0.description) }))) }
            Terminal.standardOutput.write(JSONLine.render(.object(pairs)))
        } else {
            let started = String((s.metadata?.started ?? SessionMetadata.rfc3339(nanos: start)).prefix(19)).replacingOccurrences(of: "T", with: " ")
            let ended = s.ended == "eof" || s.ended == "shutdown" ? s.ended : Terminal.paint(s.ended, .red)
            Terminal.standardOutput.write(Self.row([started, a, b, String(s.aToB), String(s.bToA), String(format: "%.3fs", duration),
                                                    ended, s.phase.rawValue, name]))
        }
    }

    /// Column widths and alignment of the text listing; the header uses the same ones.
    private static let columns: [(width: Int, right: Bool)] = [(19, false), (8, false), (8, false), (7, true), (7, true),
                                                                (10, true), (20, false), (8, false), (0, false)]

    static let header = row(["started (UTC)", "a", "b", "a->b", "b->a", "duration", "ended", "phase", "file"])

    static func row(_ cells: [String]) -> String {
        zip(cells, columns).map { cell, column in
            // Colour codes take no room on screen: pad by the visible text.
            let visible = cell.replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression).count
            let pad = String(repeating: " ", count: max(0, column.width - visible))
            return column.right ? pad + cell : cell + pad
        }.joined(separator: "  ").trimmingTrailingSpaces()
    }
}

private extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self[...]
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
