import Foundation
import LNRecording
import LNReplay
import LNWire

/// Errors `lnrr view` reports instead of writing a page (exit 2).
enum ViewError: Error, CustomStringConvertible {
    case unreadable(String, String)
    case otherNodes(String, String)

    var description: String {
        switch self {
        case .unreadable(let path, let why): "\(path): \(why)"
        case .otherNodes(let path, let first):
            "\(path) records other nodes than \(first); several recordings stack as reconnects of one pair of nodes only"
        }
    }
}

/// Builds the JSON document a view page embeds. Messages and events are the objects
/// `lnrr show --json --decode` prints (`ShowPrinter.writeJSON`), replay steps those of
/// `lnrr replay --json` plus `decoded`: one JSON form for every consumer. The only view-specific
/// part is `channels`: the phase spans of each channel, worked out here by the phase tracker so the
/// page never parses phase-change text.
///
/// The output is deterministic (no generation time, file names without their folder), so a page
/// generated from a committed recording can be checked for freshness.
enum ViewData {
    /// One recording, read into the page's JSON.
    struct Segment {
        var path: String
        var metadata: SessionMetadata?
        var json: String
        var problems: [RecordingProblem]
    }

    /// Reads recordings (in the order given) and renders each as a segment object.
    static func segments(paths: [String]) throws -> [Segment] {
        try paths.map(segment(path:))
    }

    /// Sorts segments by their start, as reconnects, and checks they are of one pair of nodes.
    static func ordered(_ segments: [Segment]) throws -> [Segment] {
        let sorted = segments.enumerated().sorted {
            ($0.element.metadata?.startedNanos ?? 0, $0.offset) < ($1.element.metadata?.startedNanos ?? 0, $1.offset)
        }.map(\.element)
        if let first = sorted.first {
            for other in sorted.dropFirst() where other.metadata?.nodeA != first.metadata?.nodeA || other.metadata?.nodeB != first.metadata?.nodeB {
                throw ViewError.otherNodes(other.path, first.path)
            }
        }
        return sorted
    }

    static func segment(path: String) throws -> Segment {
        var records = ""
        var tracker = PhaseTracker()
        var bands = Bands()
        var start: UInt64?
        var count = 0
        let reader: RecordingReader
        do {
            // Times count from the first record: the `session-start` event, at the metadata's
            // `started_ns`, in every file lnrr writes (what `lnrr show` counts from).
            reader = try RecordingReader.forEachEntry(path: path) { entry in
                if count > 0 { records += ",\n" }
                count += 1
                switch entry {
                case .message(let message):
                    let base = start ?? message.timestampNanos
                    if start == nil { start = base }
                    let observation = tracker.observe(message.bytes, direction: message.direction)
                    bands.note(observation, at: message.index)
                    ShowPrinter.writeJSON(message, offset: message.timestampNanos &- base, observation: observation,
                                          decode: true, into: &records)
                case .event(let event):
                    let base = start ?? event.timestampNanos
                    if start == nil { start = base }
                    JSONLine.write(ShowPrinter.json(event, offset: event.timestampNanos &- min(base, event.timestampNanos)), into: &records)
                }
            }
        } catch {
            throw ViewError.unreadable(path, "\(error)")
        }
        let metadata = reader.metadata
        var out = "{\"file\":"
        JSONLine.writeString((path as NSString).lastPathComponent, into: &out)
        out += ",\"meta\":"
        if let metadata, let data = try? JSONEncoder.sorted.encode(metadata) {
            out += String(decoding: data, as: UTF8.self)
        } else {
            out += "null"
        }
        out += ",\"problems\":"
        JSONLine.write(.array(reader.problems.map { .string($0.description) }), into: &out)
        out += ",\"channels\":" + bands.json + ",\"records\":[\n" + records + "]}"
        return Segment(path: path, metadata: metadata, json: out, problems: reader.problems)
    }

    /// The whole document: `{"title", "segments": [...], "replay": {...}?}`.
    static func document(title: String, segments: [Segment], replay: String? = nil) -> String {
        var out = "{\"title\":"
        JSONLine.writeString(title, into: &out)
        out += ",\"segments\":[\n" + segments.map(\.json).joined(separator: ",\n") + "]"
        if let replay { out += ",\n\"replay\":" + replay }
        return out + "}"
    }

    /// The phase spans of the connection and of every channel of one recording.
    struct Bands {
        /// A column of the phase bands: the connection, or one channel under its latest id.
        struct Column {
            var id: String?
            var label: String
            /// (first message index, phase from there on, what changed: "a -> b", or "new").
            var spans: [(Int, ChannelPhase, String)]
        }

        var columns = [Column(id: nil, label: "connection", spans: [(0, .initializing, "")])]
        /// Column of each channel id, temporary ids included after a rename.
        var byID: [ChannelID: Int] = [:]

        mutating func note(_ observation: PhaseObservation, at index: Int) {
            for change in observation.changes {
                guard let channel = change.channel else {
                    columns[0].spans.append((index, change.to, "\(change.from) -> \(change.to)"))
                    continue
                }
                var column = byID[channel] ?? change.renamedFrom.flatMap { byID[$0] }
                if column == nil {
                    columns.append(Column(id: channel.hex, label: channel.shortHex, spans: []))
                    column = columns.count - 1
                }
                let c = column!
                byID[channel] = c
                if change.renamedFrom != nil {
                    columns[c].id = channel.hex
                    columns[c].label = channel.shortHex
                }
                if change.isNewChannel || columns[c].spans.isEmpty {
                    columns[c].spans.append((index, change.to, "new"))
                } else if change.from != change.to {
                    columns[c].spans.append((index, change.to, "\(change.from) -> \(change.to)"))
                }
            }
        }

        var json: String {
            JSONLine.render(.array(columns.map { column in
                .object([
                    ("id", column.id.map { .string($0) } ?? .null), ("label", .string(column.label)),
                    ("spans", .array(column.spans.map { .array([.int($0.0), .string($0.1.rawValue), .string($0.2)]) })),
                ])
            }))
        }
    }
}

/// Collects a replay's step outcomes as they are reported (from an event loop thread) for
/// `lnrr replay --report`.
final class ReplayOutcomes: @unchecked Sendable {
    private let lock = NSLock()
    private var outcomes: [StepOutcome] = []

    func add(_ outcome: StepOutcome) {
        lock.lock()
        outcomes.append(outcome)
        lock.unlock()
    }

    var all: [StepOutcome] {
        lock.lock()
        defer { lock.unlock() }
        return outcomes
    }
}

/// `lnrr replay --report`: the view of the replayed recordings with the replay's steps beside them.
enum ReplayReport {
    /// Writes the report page; the recordings are in the replay's segment order.
    static func write(to output: String, recordings: [String], side: ReplaySide, match: String,
                      outcomes: [StepOutcome], verdict: String) throws {
        let segments: [ViewData.Segment]
        do { segments = try ViewData.segments(paths: recordings) } catch { throw CLIError("--report: \(error)") }
        var steps = ""
        var first: Int?
        for (i, outcome) in outcomes.enumerated() {
            if i > 0 { steps += ",\n" }
            if first == nil && outcome.isDivergence { first = i }
            // The line `lnrr replay --json` prints, with the decoded message spliced in last.
            steps += ReplayPrinter.jsonLine(outcome)
            if !outcome.bytes.isEmpty {
                steps.removeLast()
                steps += ",\"decoded\":"
                WireCodec.decode(outcome.bytes).json.write(into: &steps)
                steps += "}"
            }
        }
        var replay = "{\"side\":\"" + side.rawValue + "\",\"live\":\"" + side.other.rawValue + "\",\"match\":"
        JSONLine.writeString(match, into: &replay)
        replay += ",\"verdict\":"
        JSONLine.writeString(verdict, into: &replay)
        replay += ",\"first_divergence\":" + (first.map { String($0) } ?? "null") + ",\"steps\":[\n" + steps + "]}"
        let title = "lnrr replay report: " + recordings.map { ($0 as NSString).lastPathComponent }.joined(separator: ", ")
        try ViewPage.write(ViewPage.html(data: ViewData.document(title: title, segments: segments, replay: replay)), to: output)
    }
}
