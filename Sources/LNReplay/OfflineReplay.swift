import LNRecording
import LNRules
import LNWire

/// What the rules would have done to one recorded message.
public struct OfflineLine: Sendable {
    public var index: Int
    public var direction: Direction
    public var bytes: [UInt8]
    public var timestampNanos: UInt64
    public var phaseBefore: ChannelPhase
    public var phase: ChannelPhase
    public var phaseChanges: [String]
    /// The rules' annotations (`rule "x": dropped`, ...); empty when no rule acted.
    public var actions: [String]
}

/// Runs a recording through the phase tracker and a rule set without any network: a dry run of
/// a rule file against traffic that really happened.
public enum OfflineReplay {
    /// Every message the nodes themselves sent (not lnrr's injections or replacements), in order.
    public static func run(path: String, rules: RuleSet?) throws -> (lines: [OfflineLine], segment: RecordingReader) {
        let (reader, entries) = try RecordingReader.readAll(path: path)
        var phases = PhaseTracker()
        var engine = rules.map { RuleEngine(rules: $0) }
        var lines: [OfflineLine] = []
        for case .message(let m) in entries {
            guard m.bytes.count >= 2, !m.madeByLnrr else { continue }
            let observation = phases.observe(m.bytes, direction: m.direction)
            var actions: [String] = []
            if engine != nil, engine!.mayApply(to: m.type!) {
                let context = MessageContext(direction: m.direction, bytes: m.bytes, phaseBefore: observation.before,
                                             phaseAfter: observation.after, changes: observation.changes.map { ($0.from, $0.to) },
                                             nodeA: reader.metadata?.nodeA, nodeB: reader.metadata?.nodeB)
                actions = engine!.decide(context).annotations
            }
            lines.append(OfflineLine(index: m.index, direction: m.direction, bytes: m.bytes, timestampNanos: m.timestampNanos,
                                     phaseBefore: observation.before, phase: observation.after,
                                     phaseChanges: observation.changes.map(\.description), actions: actions))
        }
        return (lines, reader)
    }
}
