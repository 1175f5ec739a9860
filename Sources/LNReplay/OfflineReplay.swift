import LNRecording
import LNRelay
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
    ///
    /// `start` gets the plan (its problems, counts) before the first line; each line goes to
    /// `visit` as it is made, so memory does not grow with the recording.
    @discardableResult
    public static func run(path: String, rules: RuleSet?, side: Side = .a, ignore: TypeFilter = .default,
                           start: (ReplaySegment) -> Void = { _ in }, visit: (OfflineLine) throws -> Void) throws -> ReplaySegment {
        let segment = try ReplayPlan.segment(path: path, side: side, ignore: ignore)
        start(segment)
        // The same stage as the proxy and a live replay: injections the rules make (the way lnrr
        // can send them) count for the phases that follow.
        var stage = RuleStage(rules: rules, nodeA: segment.metadata?.nodeA, nodeB: segment.metadata?.nodeB,
                              injectable: [side.sending])
        let steps = try segment.makeStepStream()
        while let step = try steps.next() {
            guard step.kind == .send || step.kind == .expect, step.type != nil, let index = step.recordIndex else { continue }
            let plan = stage.process(step.bytes, direction: step.direction)
            let observation = plan.observation
            let actions = plan.effects.annotations
            try visit(OfflineLine(index: index, direction: step.direction, bytes: step.bytes, timestampNanos: step.timestampNanos,
                                  phaseBefore: observation.before, phase: observation.after,
                                  phaseChanges: observation.changes.map(\.description), actions: actions,
                                  note: step.kind == .send ? step.note : nil))
        }
        return segment
    }

    /// Every line at once, held in memory: for tests and small recordings.
    public static func run(path: String, rules: RuleSet?, side: Side = .a,
                           ignore: TypeFilter = .default) throws -> (lines: [OfflineLine], segment: ReplaySegment) {
        var lines: [OfflineLine] = []
        let segment = try run(path: path, rules: rules, side: side, ignore: ignore, visit: { lines.append($0) })
        return (lines, segment)
    }
}
