import Foundation
import LNRecording
import LNRelay
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

/// Writes the JSON document a view page embeds. Messages and events are the objects
/// `lnrr show --json --decode` prints (`ShowPrinter.writeJSON`), replay steps those of
/// `lnrr replay --json` plus `decoded`: one JSON form for every consumer. The only view-specific
/// part is `channels`: the phase spans of each channel, worked out here by the phase tracker so the
/// page never parses phase-change text.
///
/// The document is streamed into the page as it is made (a 100,000-message page is over 100 MB),
/// and it is deterministic (no generation time, file names without their folder), so a page
/// generated from a committed recording can be checked for freshness.
enum ViewData {
    /// A recording to draw: where it is and who it is about.
    struct Recording {
        var path: String
        var metadata: SessionMetadata?
    }

    /// Reads the recordings' metadata, sorts them by their start (reconnects stack in the order they
    /// were recorded) and checks they are of one pair of nodes.
    static func ordered(paths: [String]) throws -> [Recording] {
        let recordings = try paths.map { path in
            do {
                // The fast path: nothing is copied, only the metadata is kept.
                return Recording(path: path, metadata: try RecordingReader.scan(path: path, onMessage: { _ in }).metadata)
            } catch {
                throw ViewError.unreadable(path, "\(error)")
            }
        }
        let sorted = recordings.enumerated().sorted {
            ($0.element.metadata?.startedNanos ?? 0, $0.offset) < ($1.element.metadata?.startedNanos ?? 0, $1.offset)
        }.map(\.element)
        if let first = sorted.first {
            for other in sorted.dropFirst() where other.metadata?.nodeA != first.metadata?.nodeA || other.metadata?.nodeB != first.metadata?.nodeB {
                throw ViewError.otherNodes(other.path, first.path)
            }
        }
        return sorted
    }

    /// Writes `{"title", "segments": [...], "replay": {...}?}`; returns each recording's problems.
    static func write(title: String, recordings: [Recording], replay: String? = nil,
                      into page: inout PageWriter) throws -> [[RecordingProblem]] {
        var out = "{\"title\":"
        JSONValue.writeString(title, into: &out)
        out += ",\"segments\":[\n"
        var problems: [[RecordingProblem]] = []
        for (i, recording) in recordings.enumerated() {
            if i > 0 { out += ",\n" }
            problems.append(try segment(recording, into: &out, page: &page))
        }
        out += "]"
        if let replay { out += ",\n\"replay\":" + replay }
        out += "}"
        try page.data(out)
        return problems
    }

    /// One recording as a segment object, appended to `out`, which is handed to the page whenever
    /// it grows past a megabyte.
    private static func segment(_ recording: Recording, into out: inout String, page: inout PageWriter) throws -> [RecordingProblem] {
        var tracker = PhaseTracker()
        var bands = Bands()
        var start: UInt64?
        var count = 0
        var failure: Error?
        out += "{\"file\":"
        JSONValue.writeString((recording.path as NSString).lastPathComponent, into: &out)
        out += ",\"meta\":"
        if let metadata = recording.metadata, let data = try? JSONEncoder.sorted.encode(metadata) {
            out += String(decoding: data, as: UTF8.self)
        } else {
            out += "null"
        }
        out += ",\"records\":[\n"
        let reader: RecordingReader
        do {
            // Times count from the first record: the `session-start` event, at the metadata's
            // `started_ns`, in every file lnrr writes (what `lnrr show` counts from).
            reader = try RecordingReader.forEachEntry(path: recording.path) { entry in
                if count > 0 { out += ",\n" }
                count += 1
                switch entry {
                case .message(let message):
                    let base = start ?? message.timestampNanos
                    if start == nil { start = base }
                    let observation = tracker.observe(message.bytes, direction: message.direction)
                    bands.note(observation, at: message.index)
                    ShowPrinter.writeJSON(message, offset: message.timestampNanos &- base, observation: observation,
                                          decode: true, into: &out)
                case .event(let event):
                    let base = start ?? event.timestampNanos
                    if start == nil { start = base }
                    ShowPrinter.json(event, offset: event.timestampNanos &- min(base, event.timestampNanos)).write(into: &out)
                }
                if out.utf8.count >= 1 << 20, failure == nil {
                    do { try page.data(out) } catch { failure = error }
                    out = ""
                }
            }
        } catch {
            throw ViewError.unreadable(recording.path, "\(error)")
        }
        if let failure { throw failure }
        out += "],\"problems\":"
        JSONValue.array(reader.problems.map { .string($0.description) }).write(into: &out)
        out += ",\"channels\":" + bands.json + ",\"channels_not_shown\":" + String(bands.notShown.count) + "}"
        return reader.problems
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

        /// Channels after this many get no band: a page stays readable, and a recording full of
        /// invented channel ids cannot make it thousands of columns wide.
        static let maxChannels = 16
        var columns = [Column(id: nil, label: "connection", spans: [(0, .initializing, "")])]
        /// Channels seen beyond `maxChannels`.
        var notShown = Set<ChannelID>()
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
                    guard columns.count <= Self.maxChannels else {
                        notShown.insert(channel)
                        continue
                    }
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
    static func write(to output: String, segments: [ReplaySegment], side: Side, match: String,
                      outcomes: [StepOutcome], verdict: String) throws {
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
        JSONValue.writeString(match, into: &replay)
        replay += ",\"verdict\":"
        JSONValue.writeString(verdict, into: &replay)
        replay += ",\"first_divergence\":" + (first.map { String($0) } ?? "null") + ",\"steps\":[\n" + steps + "]}"
        let recordings = segments.map { ViewData.Recording(path: $0.path, metadata: $0.metadata) }
        let title = "lnrr replay report: " + recordings.map { ($0.path as NSString).lastPathComponent }.joined(separator: ", ")
        do {
            try PageWriter.write(to: output) { page in
                _ = try ViewData.write(title: title, recordings: recordings, replay: replay, into: &page)
            }
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("--report: \(error)")
        }
    }
}
