/// Which way a message travels through the proxy.
///
/// The node that dials the proxy is **a**; the node the proxy dials on its behalf (the upstream) is
/// **b**. Every layer (recordings, rules, phases, replay) speaks of directions in these terms.
public enum Direction: String, Sendable, Hashable, Codable, CaseIterable {
    case aToB = "a->b"
    case bToA = "b->a"

    /// The opposite direction.
    @inlinable public var reversed: Direction { self == .aToB ? .bToA : .aToB }
}
