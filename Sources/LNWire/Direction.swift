/// Which way a message travels through the proxy.
///
/// The node that dials the proxy is **a**; the node the proxy dials on its behalf (the upstream) is
/// **b**. Every layer (recordings, rules, phases, replay) speaks of directions in these terms.
public enum Direction: String, Sendable, Hashable, Codable, CaseIterable {
    case aToB = "a->b"
    case bToA = "b->a"

    /// The opposite direction.
    @inlinable public var reversed: Direction { self == .aToB ? .bToA : .aToB }

    /// A direction as a user types it, wherever one is given (command-line flags, `lnrr ctl`
    /// parameters, rule files, the control socket): `a->b` / `b->a`, or `a2b` / `b2a`, which need
    /// no quoting in a shell (an unquoted `a->b` is a redirection that creates a file named `b`).
    /// Case and surrounding spaces do not matter. Nil for anything else.
    public init?(parsing text: some StringProtocol) {
        var lowered = text.lowercased()
        lowered.removeAll { $0 == " " || $0 == "\t" }
        switch lowered {
        case "a->b", "a2b": self = .aToB
        case "b->a", "b2a": self = .bToA
        default: return nil
        }
    }

    /// The forms `init(parsing:)` accepts, for error messages.
    public static let acceptedForms = "a2b or b2a (also written 'a->b', 'b->a')"

    /// The form that needs no shell quoting (`a2b`, `b2a`), for printing commands a user may copy.
    public var shellSafe: String { self == .aToB ? "a2b" : "b2a" }
}
