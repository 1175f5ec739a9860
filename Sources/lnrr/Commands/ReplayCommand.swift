import ArgumentParser
import Foundation
import LNRecording
import LNRelay
import LNReplay
import LNRules
import LNTransport
import LNTransportNIO
import LNWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// `lnrr replay`: play one side of a recording against a live node.
struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Play one side of a recorded session against a live node and report where it behaves differently.",
        discussion: """
            lnrr takes the place of side a (the node that dialled the proxy) or side b (the node the \
            proxy dialled) and sends what that side's peer received in the recording: injected \
            messages included, dropped ones left out. Between its messages it waits for the live \
            node's recorded messages and compares each with --match:
              type    the same message types in the same order (default)
              fields  decoded fields equal, except signatures, timestamps and ping/pong padding \
            (add names with --ignore-field)
              exact   byte for byte
            Pings, pongs and gossip are neither sent nor expected (--ignore); lnrr answers the live \
            node's pings itself.

            Identifiers adapt (--bind on, the default): lnrr learns the live node's \
            temporary_channel_id (from its open_channel) and channel_id (v1 from the funding \
            outpoint, v2 from the revocation basepoints), sends them in place of the recorded ones \
            and compares through them. Signatures cannot adapt: they need the played side's keys. \
            --no-bind sends the recorded ids.

            Order (--order protocol, the default): messages keep their recorded order, except \
            connection-level messages a node sends on its own schedule (peer_storage, gossip and \
            gossip queries, ping/pong, warning to the whole connection), which may come anywhere \
            within --order-window steps and are reported reordered. --order strict: everything in \
            the recorded order.

            Each step prints one line: sent, matched, reordered, diverged (with the fields that \
            differ), missing (nothing within --timeout), unexpected (the live node sent something \
            the recording does not have there) or not-run; bound lines show identifiers learned. \
            The replay stops at the first missing message. Then the bindings and a verdict. --json \
            prints one JSON object per line instead (differences as {field, recorded, live}).

            Several recordings of the same two nodes replay as one, reconnecting between them \
            (they are put in the order they were recorded). A truncated recording (lnrr killed \
            while recording) replays up to its last complete message, and says so.

            --offline runs the messages a replay playing --as (default a) would send and expect \
            through the phase tracker and --rules without any network, injected records included, \
            and prints what the rules would have done to each.

            Exit status: 0 the live node behaved as recorded to the end, 1 it diverged, 2 usage, \
            unreadable recordings or connection errors.

            Examples:
              lnrr replay rec.pcapng --as a --connect 02ab...@127.0.0.1:9736 --key keys/alice.key
              lnrr replay rec.pcapng --as b --listen 127.0.0.1:9735 --key keys/bob.key --timing fast
              lnrr replay s1.pcapng s2.pcapng --as a --connect ID@HOST:PORT --key a.key --match fields
              lnrr replay rec.pcapng --offline --rules variation.yaml
            """
    )

    @Argument(help: ArgumentHelp("Recordings to replay (several: one session each, reconnecting between them).", valueName: "FILE"))
    var files: [String]

    @Option(name: .customLong("as"), help: ArgumentHelp("The recorded side lnrr plays: a (dialled the proxy) or b (was dialled).", valueName: "a|b"))
    var side: String?

    @Option(name: .long, help: ArgumentHelp("Dial the live node.", valueName: "NODEID@HOST:PORT"))
    var connect: String?

    @Option(name: .long, help: ArgumentHelp("Wait for the live node to dial this address (port 0 picks one; see the listening line).", valueName: "HOST:PORT"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("The key file of the node lnrr plays (its node id is what the live node sees).", valueName: "FILE"))
    var key: String?

    @Option(name: .long, help: ArgumentHelp("How the live node's messages must match: type, fields or exact.", valueName: "MODE"))
    var match: String = "type"

    @Option(name: .long, help: ArgumentHelp("Types neither sent nor expected: names, numbers, ranges, gossip, custom, or none.", valueName: "TYPES"))
    var ignore: String = "ping,pong,gossip"

    @Option(name: .long, help: ArgumentHelp("More field names --match fields leaves out (comma-separated).", valueName: "NAMES"))
    var ignoreField: String?

    @Option(name: .long, help: ArgumentHelp("Learn the live node's temporary_channel_id and channel_id and use them in what lnrr sends and compares: on (default) or off.", valueName: "on|off"))
    var bind: String = "on"

    @Flag(name: .long, help: "Send the recorded channel ids as they are (the same as --bind off).")
    var noBind = false

    @Option(name: .long, help: ArgumentHelp("protocol (default): connection-level messages a node sends on its own schedule (peer storage, gossip, ping, warning to the whole connection) may come anywhere within --order-window steps and are reported reordered; strict: everything in the recorded order.", valueName: "protocol|strict"))
    var order: String = "protocol"

    @Option(name: .long, help: ArgumentHelp("How many steps from its recorded place a connection-level message may come under --order protocol.", valueName: "STEPS"))
    var orderWindow: Int = ReplayOptions.defaultOrderWindow

    @Option(name: .long, help: ArgumentHelp("When to send: recorded (the recorded gaps), fast (as soon as the expected input came) or scale:X (gaps times X).", valueName: "TIMING"))
    var timing: String = "recorded"

    @Option(name: .long, help: ArgumentHelp("How long to wait for each expected message. \(DurationArgument<Milliseconds>.helpSuffix)", valueName: "DURATION"))
    var timeout = DurationArgument<Milliseconds>(10_000)

    @Option(name: .long, help: ArgumentHelp("How long to wait for the connection and its handshake (listening: for the live node to dial). \(DurationArgument<Seconds>.helpSuffix)", valueName: "DURATION"))
    var connectTimeout = DurationArgument<Seconds>(30)

    @Option(name: .long, help: ArgumentHelp("Rules to apply to the replayed traffic (docs/rules.md): replay with a variation.", valueName: "FILE"))
    var rules: String?

    @Flag(name: .long, help: "No network: print what the rules and the phase tracker make of the recording.")
    var offline = false

    @Flag(name: .long, help: "One JSON object per line.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Also write the replay as a ladder diagram (HTML, see lnrr view): the live node's messages beside the recorded ones, the first divergence highlighted.", valueName: "OUT.html"))
    var report: String?

    @Flag(name: .long, help: "Accept a key file that group or others can read.")
    var insecureKeys = false

    func validate() throws {
        if files.isEmpty { throw ValidationError("give the recording to replay") }
        if offline {
            if connect != nil || listen != nil { throw ValidationError("--offline uses no network: leave out --connect and --listen") }
            if files.count != 1 { throw ValidationError("--offline takes one recording") }
            if report != nil { throw ValidationError("--report draws a replay against a live node; for a recording alone use lnrr view") }
            if let side, Side(rawValue: side) == nil { throw ValidationError("--as must be a or b: the recorded side lnrr would play") }
            return
        }
        guard let side, Side(rawValue: side) != nil else { throw ValidationError("--as must be a or b: the recorded side lnrr plays") }
        if (connect == nil) == (listen == nil) {
            throw ValidationError("give exactly one of --connect NODEID@HOST:PORT (dial the live node) or --listen HOST:PORT (let it dial)")
        }
        if key == nil { throw ValidationError("--key FILE: the key of the node lnrr plays") }
        if MatchMode(rawValue: match) == nil { throw ValidationError("--match must be type, fields or exact") }
        if timeout.nanoseconds == 0 { throw ValidationError("--timeout must be longer than 0") }
        if connectTimeout.nanoseconds == 0 { throw ValidationError("--connect-timeout must be longer than 0") }
        if bind != "on" && bind != "off" { throw ValidationError("--bind must be on or off") }
        if ReplayOrder(rawValue: order) == nil { throw ValidationError("--order must be protocol or strict") }
        if orderWindow < 0 { throw ValidationError("--order-window must be 0 or more steps") }
    }

    func run() async throws {
        let ruleSet = try rules.map { try RecordCommand.loadRules($0).rules }
        if offline { return try runOffline(ruleSet) }
        let side = Side(rawValue: self.side!)!
        let filter: TypeFilter
        let timingMode: ReplayTiming
        do {
            filter = try TypeFilter.parse(ignore)
            timingMode = try ReplayTiming(parsing: timing)
        } catch { throw CLIError("\(error)") }
        var ignoredFields = MessageMatcher.defaultIgnoredFields
        for name in (ignoreField ?? "").split(separator: ",") { ignoredFields.insert(name.trimmingCharacters(in: .whitespaces)) }
        let endpoint: ReplayEndpoint
        do {
            if let connect { endpoint = .connect(try PeerAddress(parsing: connect)) } else { endpoint = .listen(try HostPort(parsing: listen!)) }
        } catch {
            throw CLIError("\(connect != nil ? "--connect" : "--listen"): \(error)")
        }
        let secret: NodeSecret
        do { secret = try KeyFile.read(path: key!, allowInsecure: insecureKeys) } catch { throw CLIError("\(error)") }
        let segments: [ReplaySegment]
        do { segments = try ReplayPlan.segments(paths: files, side: side, ignore: filter) } catch { throw CLIError("\(error)") }

        let printer = ReplayPrinter(json: json, totalSteps: segments.reduce(0) { $0 + $1.stepCount })
        for segment in segments { notices(for: segment, side: side, secret: secret, printer: printer) }
        let options = ReplayOptions(side: side, matcher: MessageMatcher(mode: MatchMode(rawValue: match)!, ignoredFields: ignoredFields),
                                    timing: timingMode, timeoutNanos: timeout.nanoseconds, ignore: filter, rules: ruleSet,
                                    bind: bind == "on" && !noBind, order: ReplayOrder(rawValue: order)!, orderWindow: orderWindow)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // Only a --report page needs every outcome afterwards; otherwise none is kept (memory stays
        // bounded however long the replay).
        let outcomes = ReplayOutcomes()
        let keepOutcomes = report != nil
        let driver = ReplayDriver(options: options, endpoint: endpoint, secret: secret,
                                  connectTimeout: .nanoseconds(Int64(connectTimeout.nanoseconds)), group: group,
                                  onListening: { printer.listening($0, nodeID: secret.nodeID) },
                                  onReport: { printer.report($0); if keepOutcomes { outcomes.add($0) } })
        var connectionError: Error?
        do { try await driver.run(segments) } catch { connectionError = error }
        try? await group.shutdownGracefully()
        let verdict = printer.finish(truncated: segments.contains(where: \.truncated), connectionError: connectionError.map { "\($0)" })
        if let report {
            try ReplayReport.write(to: report, segments: segments, side: side, match: match, outcomes: outcomes.all,
                                   verdict: connectionError != nil ? "error" : verdict ? "matched" : "diverged")
        }
        if let connectionError { throw CLIError("replay: \(connectionError)") }
        if !verdict { throw CLIError("", code: .failure) }
    }

    private func notices(for segment: ReplaySegment, side: Side, secret: NodeSecret, printer: ReplayPrinter) {
        for problem in segment.problems {
            printer.notice("\(segment.path): \(problem)")
        }
        if segment.truncated {
            let why = segment.hasClose ? "it ends mid-record" : "it has no close record"
            printer.notice("\(segment.path) is truncated (\(why)): replaying its \(segment.recordedMessages) complete messages, then closing")
        }
        let recorded = side == .a ? segment.metadata?.nodeA : segment.metadata?.nodeB
        if let recorded, recorded != secret.nodeID.hex {
            printer.notice("--key is node \(secret.nodeID.hex.prefix(16))..., but side \(side.rawValue) was \(recorded.prefix(16))... in \(segment.path); the live node may refuse or behave differently")
        }
    }

    private func runOffline(_ rules: RuleSet?) throws {
        var acted = 0, count = 0
        // Lines are printed as the plan makes them: memory stays bounded whatever the recording's size.
        func printLine(_ line: OfflineLine) {
            count += 1
            if !line.actions.isEmpty { acted += 1 }
            let type = WireMessage.type(line.bytes)!  // OfflineReplay leaves runts out
            if json {
                Terminal.standardOutput.write(JSONLine.render(.object([
                    ("i", .int(line.index)), ("dir", .string(line.direction.rawValue)), ("type", .int(Int(type))),
                    ("name", .string(describeType(type))), ("phase_before", .string(line.phaseBefore.rawValue)),
                    ("phase", .string(line.phase.rawValue)), ("phase_changes", .array(line.phaseChanges.map { .string($0) })),
                    ("rules", .array(line.actions.map { .string($0) })),
                ] + (line.note.map { [("note", JSONValue.string($0))] } ?? []))))
            } else {
                let change = line.phaseChanges.isEmpty ? "" : "  [" + line.phaseChanges.joined(separator: ", ") + "]"
                let actions = line.actions.isEmpty ? "" : "  " + Terminal.paint(line.actions.joined(separator: "; "), .yellow)
                let note = line.note.map { "  (" + $0 + ")" } ?? ""
                Terminal.standardOutput.write(String(format: "%5d  ", line.index) + line.direction.rawValue + "  "
                                              + line.phase.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0) + " "
                                              + describeType(type).padding(toLength: 28, withPad: " ", startingAt: 0) + change + actions + note)
            }
        }
        do {
            try OfflineReplay.run(path: files[0], rules: rules, side: side.flatMap(Side.init(rawValue:)) ?? .a,
                                  ignore: try TypeFilter.parse(ignore),
                                  start: { segment in
                                      for problem in segment.problems { Terminal.standardError.write("note: \(files[0]): \(problem)") }
                                  },
                                  visit: printLine)
        } catch { throw CLIError("\(error)") }
        let summary = "\(count) messages, \(acted) acted on by \(rules == nil ? "no rules (none given)" : "the rules")"
        if json {
            Terminal.standardOutput.write(JSONLine.render(.object([("messages", .int(count)), ("acted_on", .int(acted))])))
        } else {
            Terminal.standardOutput.write(summary)
        }
    }
}

/// Prints replay reports as they come (from an event loop thread), with a progress bar on a
/// terminal, and the verdict at the end.
final class ReplayPrinter: @unchecked Sendable {
    private let json: Bool
    private let totalSteps: Int
    private let lock = NIOLock()
    private var counts: [StepOutcome.Result: Int] = [:]
    private var firstDivergence: StepOutcome?
    private var bindings: [IdentifierBinding.Pair] = []
    private var lastStep = 0
    private var headerPrinted = false
    /// Only where a person watches: stdout and stderr on a terminal, not JSON, and long enough to need it.
    private let progress: Bool

    init(json: Bool, totalSteps: Int) {
        self.json = json
        self.totalSteps = totalSteps
        progress = !json && Terminal.standardOutput.isTTY && Terminal.standardError.isTTY && totalSteps >= 20
    }

    func notice(_ text: String) {
        lock.withLock {
            if json {
                Terminal.standardOutput.write(JSONLine.render(.object([("event", .string("notice")), ("message", .string(text))])))
            } else {
                Terminal.standardError.write("note: " + text)
            }
        }
    }

    /// The listening line goes to stdout in both modes: it is how a script learns the port.
    func listening(_ address: SocketAddress?, nodeID: NodeID) {
        lock.withLock { ListeningLine.write(address, requested: "?", [("node_id", .string(nodeID.hex))]) }
    }

    func report(_ outcome: StepOutcome) {
        lock.withLock {
            counts[outcome.result, default: 0] += 1
            if outcome.isDivergence && firstDivergence == nil { firstDivergence = outcome }
            if let pair = outcome.binding { bindings.append(pair) }
            if let step = outcome.step { lastStep = max(lastStep, step) }
            if json {
                Terminal.standardOutput.write(Self.jsonLine(outcome))
                return
            }
            if progress { Terminal.standardError.write("\r\u{1B}[K", newline: false) }
            if !headerPrinted {
                headerPrinted = true
                Terminal.standardOutput.write(Terminal.paint(" step   time(s)  dir   message                        result      detail", .dim))
            }
            Terminal.standardOutput.write(Self.textLine(outcome))
            if progress {
                let width = 30, done = min(width, lastStep * width / max(totalSteps, 1))
                Terminal.standardError.write("[" + String(repeating: "#", count: done) + String(repeating: ".", count: width - done)
                                             + "] \(lastStep)/\(totalSteps) steps", newline: false)
            }
        }
    }

    /// Prints the verdict; true when the live node behaved as recorded.
    func finish(truncated: Bool, connectionError: String?) -> Bool {
        lock.withLock {
            if progress { Terminal.standardError.write("\r\u{1B}[K", newline: false) }
            let divergences = (counts[.diverged] ?? 0) + (counts[.missing] ?? 0) + (counts[.unexpected] ?? 0) + (counts[.notRun] ?? 0)
            let ok = divergences == 0 && connectionError == nil
            let verdict = connectionError != nil ? "error" : ok ? "matched" : "diverged"
            if json {
                var pairs: [(String, JSONValue)] = [("verdict", .string(verdict))]
                for result in [StepOutcome.Result.sent, .matched, .reordered, .diverged, .missing, .unexpected, .dropped, .injected, .notRun] {
                    pairs.append((result.rawValue.replacingOccurrences(of: "-", with: "_"), .int(counts[result] ?? 0)))
                }
                pairs.append(("truncated", .bool(truncated)))
                if let first = firstDivergence { pairs.append(("first_divergence", .string(Self.summary(first)))) }
                if let first = firstDivergence, let step = first.step ?? first.atStep { pairs.append(("first_divergence_step", .int(step))) }
                pairs.append(("bindings", .array(bindings.map(Self.bindingJSON))))
                if let connectionError { pairs.append(("error", .string(connectionError))) }
                Terminal.standardOutput.write(JSONLine.render(.object(pairs)))
                return ok
            }
            let tally = "\(counts[.sent] ?? 0) sent, \(counts[.matched] ?? 0) matched, "
                + ((counts[.reordered] ?? 0) > 0 ? "\(counts[.reordered]!) reordered, " : "") + "\(counts[.diverged] ?? 0) diverged, "
                + "\(counts[.missing] ?? 0) missing, \(counts[.unexpected] ?? 0) unexpected"
                + ((counts[.notRun] ?? 0) > 0 ? ", some steps not run" : "")
            for pair in bindings {
                Terminal.standardOutput.write("binding: \(pair.kind.rawValue) \(pair.recorded.hex) (recorded) is \(pair.live.hex) (live)")
            }
            if connectionError != nil {
                // The error itself goes to stderr, once (see run()).
                Terminal.standardOutput.write(Terminal.paint("verdict: error", .red) + " (\(tally))")
            } else if ok {
                Terminal.standardOutput.write(Terminal.paint("verdict: matched", .green) + " - the live node behaved as recorded"
                                              + (truncated ? " up to the end of the truncated recording" : "") + " (\(tally))")
            } else {
                Terminal.standardOutput.write(Terminal.paint("verdict: diverged", .red) + " at " + Self.summary(firstDivergence!) + " (\(tally))")
            }
            return ok
        }
    }

    static func summary(_ o: StepOutcome) -> String {
        let what = o.type.map(describeType) ?? (o.result == .notRun ? "" : "the connection")
        let step = o.step.map { "step \($0)" } ?? o.atStep.map { "step \($0)" } ?? "the end"
        return "\(step): \(o.direction.rawValue) \(what) \(o.result.rawValue)" + (o.detail.map { " (\($0))" } ?? "")
    }

    static func textLine(_ o: StepOutcome) -> String {
        let colour: Terminal.Colour = switch o.result {
        case .matched, .sent, .closed: .green
        case .diverged, .missing, .unexpected, .notRun: .red
        case .dropped, .injected, .reordered: .yellow
        case .bound: .dim
        }
        let step = o.step.map { String(format: "%5d", $0) } ?? "    -"
        let name = o.type.map(describeType) ?? o.binding.map(\.kind.rawValue)
            ?? (o.result == .closed || o.result == .missing || o.result == .matched ? "(close)" : "")
        let time = String(format: "%9.3f", Double(o.elapsedNanos) / 1e9)
        let result = Terminal.paint(o.result.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0), colour)
        return "\(step)  \(time)  \(o.direction.rawValue)  \(name.padding(toLength: 30, withPad: " ", startingAt: 0)) \(result)  \(o.detail ?? "")"
    }

    static func bindingJSON(_ pair: IdentifierBinding.Pair) -> JSONValue {
        .object([("kind", .string(pair.kind.rawValue)), ("recorded", .string(pair.recorded.hex)), ("live", .string(pair.live.hex))])
    }

    static func jsonLine(_ o: StepOutcome) -> String {
        var pairs: [(String, JSONValue)] = [
            ("step", o.step.map { .int($0) } ?? .null), ("segment", .int(o.segment)), ("result", .string(o.result.rawValue)),
            ("dir", .string(o.direction.rawValue)),
        ]
        if let type = o.type {
            pairs.append(("type", .int(Int(type))))
            pairs.append(("name", .string(describeType(type))))
            pairs.append(("hex", .string(HexString.encode(o.bytes))))
        }
        if let record = o.recordIndex { pairs.append(("record", .int(record))) }
        pairs.append(("t_ns", .uint(o.elapsedNanos)))
        if let detail = o.detail { pairs.append(("detail", .string(detail))) }
        if let at = o.atStep { pairs.append(("at_step", .int(at))) }
        if !o.differences.isEmpty {
            pairs.append(("differences", .array(o.differences.map { d in
                var fields: [(String, JSONValue)] = [("field", .string(d.field)), ("recorded", d.recorded ?? .null),
                                                          ("live", d.live ?? .null)]
                if let offset = d.offset { fields.append(("offset", .int(offset))) }
                return .object(fields)
            })))
        }
        if let pair = o.binding { pairs.append(("binding", bindingJSON(pair))) }
        return JSONLine.render(.object(pairs))
    }
}
