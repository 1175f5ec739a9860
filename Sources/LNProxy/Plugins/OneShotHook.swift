import LNRelay
import LNWire
import NIOConcurrencyHelpers

/// `--custommsg-hook CMD` behind the `MessageHook` interface: the slow path, one process per custom
/// message (CustomMessageHook). Commands for one session and direction run one after another, so
/// their answers come back in the order asked, as the interface promises.
public final class OneShotHook: MessageHook {
    let hook: CustomMessageHook
    private struct Key: Hashable { var session: Int; var direction: Direction }
    /// Per stream: the questions waiting for the one running to finish (a running one is the head).
    private let waiting = NIOLockedValueBox<[Key: [(HookQuery, @Sendable (HookOutcome) -> Void)]]>([:])

    public init(command: String, timeout: Double) {
        hook = CustomMessageHook(command: command, timeout: timeout)
    }

    public func consults(type: UInt16) -> Bool { type >= 32768 }

    public func ask(_ query: HookQuery, answer: @escaping @Sendable (HookOutcome) -> Void) {
        let key = Key(session: query.session, direction: query.direction)
        let first = waiting.withLockedValue { queues -> Bool in
            queues[key, default: []].append((query, answer))
            return queues[key]!.count == 1
        }
        if first { run(key, query, answer) }
    }

    private func run(_ key: Key, _ query: HookQuery, _ answer: @escaping @Sendable (HookOutcome) -> Void) {
        let command = hook.command
        hook.run(peerID: query.peerID, direction: query.direction, message: query.message) { [self] verdict, problem in
            var outcome: HookOutcome
            switch verdict {
            case .continue: outcome = HookOutcome(.continue)
            case .drop: outcome = HookOutcome(.drop)
            case .replace(let bytes): outcome = HookOutcome(.replace(bytes))
            }
            outcome.problem = problem
            outcome.decidedBy = command
            answer(outcome)
            let next = waiting.withLockedValue { queues -> (HookQuery, @Sendable (HookOutcome) -> Void)? in
                queues[key]?.removeFirst()
                if queues[key]?.isEmpty ?? true { queues[key] = nil; return nil }
                return queues[key]!.first
            }
            if let (query, answer) = next { run(key, query, answer) }
        }
    }
}
