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
    /// Why the message is in the replay when the node did not send it (`injected by lnrr`, `duplicate`).
    public var note: String?
}

/// Runs a recording through the phase tracker and a rule set without any network: a dry run of
/// a rule file against traffic that really happened.
public enum OfflineReplay {
    /// The messages a live replay playing `side` would put through the rules, in recorded order:
    /// what lnrr would send (what the live node's counterpart received: injected records and
    /// replacements included, duplicates twice) and what the live node would send (its own
    /// messages). Types in `ignore` are left out, as a live replay leaves them out; injections
    /// the rules make are seen by the phase tracker, as in a live replay.
    public static func run(path: String, rules: RuleSet?, side: ReplaySide = .a,
                           ignore: TypeFilter = .default) throws -> (lines: [OfflineLine], segment: ReplaySegment) {
        let segment = try ReplayPlan.segment(path: path, side: side, ignore: ignore)
        var phases = PhaseTracker()
        var engine = rules.map { RuleEngine(rules: $0) }
        var lines: [OfflineLine] = []
        for step in segment.steps where step.kind == .send || step.kind == .expect {
            guard let type = step.type, let index = step.recordIndex else { continue }
            let observation = phases.observe(step.bytes, direction: step.direction)
            var actions: [String] = []
            if engine != nil, engine!.mayApply(to: type) {
                let context = MessageContext(direction: step.direction, bytes: step.bytes, phaseBefore: observation.before,
                                             phaseAfter: observation.after, changes: observation.changes.map { ($0.from, $0.to) },
                                             nodeA: segment.metadata?.nodeA, nodeB: segment.metadata?.nodeB)
                let decision = engine!.decide(context)
                actions = decision.annotations
                for (message, direction) in decision.injectBefore + decision.injectAfter where direction == side.sending {
                    _ = phases.observe(message, direction: direction)
                }
            }
            lines.append(OfflineLine(index: index, direction: step.direction, bytes: step.bytes, timestampNanos: step.timestampNanos,
                                     phaseBefore: observation.before, phase: observation.after,
                                     phaseChanges: observation.changes.map(\.description), actions: actions,
                                     note: step.kind == .send ? step.note : nil))
        }
        return (lines, segment)
    }
}
