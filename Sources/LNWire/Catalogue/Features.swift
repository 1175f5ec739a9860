/// BOLT 9 feature bits: a pair per feature, the even bit "required", the odd bit "optional".
public enum Features {
    /// Even bit of each pair and the feature's name (facts from BOLT 9).
    static let names: [Int: String] = [
        0: "option_data_loss_protect", 4: "option_upfront_shutdown_script", 6: "gossip_queries",
        8: "var_onion_optin", 10: "gossip_queries_ex", 12: "option_static_remotekey", 14: "payment_secret",
        16: "basic_mpp", 18: "option_support_large_channel", 22: "option_anchors", 24: "option_route_blinding",
        26: "option_shutdown_anysegwit", 28: "option_dual_fund", 34: "option_quiesce",
        36: "option_attribution_data", 38: "option_onion_messages", 42: "option_provide_storage",
        44: "option_channel_type", 46: "option_scid_alias", 48: "option_payment_metadata",
        50: "option_zeroconf", 60: "option_simple_close", 62: "option_splice",
    ]

    /// Field names whose bytes are feature bitfields.
    static let fieldNames: Set<String> = ["features", "globalfeatures", "type"]

    /// Bit numbers set in a big-endian bitfield (bit 0 is the least significant bit of the last byte).
    public static func bits(_ bitfield: [UInt8]) -> [Int] {
        var result: [Int] = []
        for (i, byte) in bitfield.reversed().enumerated() where byte != 0 {
            for bit in 0..<8 where byte & (1 << bit) != 0 { result.append(i * 8 + bit) }
        }
        return result
    }

    /// `var_onion_optin (required)`, `option_anchors (optional)`, or `bit 101` for unknown bits.
    public static func describe(bit: Int) -> String {
        if let name = names[bit & ~1] { return "\(name) (\(bit % 2 == 0 ? "required" : "optional"))" }
        return "bit \(bit)"
    }

    public static func describe(_ bitfield: [UInt8]) -> [String] { bits(bitfield).map(describe(bit:)) }
}
