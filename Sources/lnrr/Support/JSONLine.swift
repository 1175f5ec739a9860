import LNWire

/// One-object-per-line output (`--json`), written by LNWire's ``JSONValue`` (the one JSON writer):
/// deterministic key order (as given), no Foundation round trip on hot paths. These are spelling
/// helpers only; the values are plain `JSONValue`s.
enum JSONLine {
    static func object(_ pairs: KeyValuePairs<String, JSONValue>) -> String {
        JSONValue.object(pairs.map { ($0.key, $0.value) }).description
    }

    static func render(_ value: JSONValue) -> String { value.description }
}
