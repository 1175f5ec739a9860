/// BOLT 9 feature bits: a pair per feature, the even bit "required", the odd bit "optional".
public enum Features {
    /// Even bit of each pair and the feature's name: BOLT 9's table, generated from tools/bolts/09-features.csv
    /// (the Wireshark dissector uses the same table).
    static let names: [Int: String] = MessageCatalogue.generatedFeatureNames

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
