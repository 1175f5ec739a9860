/// Interim message-name table until LNWire's catalogue lands.
public enum WireNames {
    static let known: [UInt16: String] = [
        1: "warning",
        2: "stfu",
        7: "peer_storage",
        9: "peer_storage_retrieval",
        16: "init",
        17: "error",
        18: "ping",
        19: "pong",
        21: "expiry_too_far",
        23: "mpp_timeout",
        32: "open_channel",
        33: "accept_channel",
        34: "funding_created",
        35: "funding_signed",
        36: "channel_ready",
        38: "shutdown",
        39: "closing_signed",
        40: "closing_complete",
        41: "closing_sig",
        64: "open_channel2",
        65: "accept_channel2",
        66: "tx_add_input",
        67: "tx_add_output",
        68: "tx_remove_input",
        69: "tx_remove_output",
        70: "tx_complete",
        71: "tx_signatures",
        72: "tx_init_rbf",
        73: "tx_ack_rbf",
        74: "tx_abort",
        77: "splice_locked",
        80: "splice_init",
        81: "splice_ack",
        127: "start_batch",
        128: "update_add_htlc",
        130: "update_fulfill_htlc",
        131: "update_fail_htlc",
        132: "commitment_signed",
        133: "revoke_and_ack",
        134: "update_fee",
        135: "update_fail_malformed_htlc",
        136: "channel_reestablish",
        256: "channel_announcement",
        257: "node_announcement",
        258: "channel_update",
        259: "announcement_signatures",
        261: "query_short_channel_ids",
        262: "reply_short_channel_ids_end",
        263: "query_channel_range",
        264: "reply_channel_range",
        265: "gossip_timestamp_filter",
        513: "onion_message",
    ]

    public static func name(of type: UInt16) -> String? { known[type] }

    /// The type of a BOLT name (`ping`, `WIRE_PING`, any case).
    public static func type(named name: String) -> UInt16? {
        var key = name.lowercased()
        if key.hasPrefix("wire_") { key.removeFirst(5) }
        return byName[key]
    }

    static let byName: [String: UInt16] = Dictionary(known.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })

    /// The BOLT name, `custom` for 32768-65535, else `unknown-odd` / `unknown-even`.
    public static func displayName(of type: UInt16) -> String {
        if let name = known[type] { return name }
        if type >= 32768 { return "custom" }
        return type % 2 == 1 ? "unknown-odd" : "unknown-even"
    }
}
