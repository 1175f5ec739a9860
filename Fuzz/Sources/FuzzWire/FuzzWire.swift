import LNWire

/// `WireCodec.decode` on arbitrary message bytes (every message a peer sends reaches it), and the
/// JSON `lnrr decode --json` prints for the result. Properties: decoding never crashes; the decoded
/// JSON is valid and stable; encoding the fields of a message that decoded completely does not crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    let bytes = Array(input)
    let decoded = WireCodec.decode(bytes)
    let written = decoded.json.description
    guard let again = try? JSONValue.parse(written) else { fatalError("decode wrote JSON it cannot read: \(written)") }
    precondition(again.description == written, "decode's JSON is not stable: \(written)")
    if decoded.isComplete, decoded.name != nil {
        // Encoding what decoded must not crash; it may legitimately differ (non-minimal encodings
        // are accepted on input and written minimally).
        _ = try? WireCodec.encode(type: decoded.type, fields: decoded.fields.json)
    }
    return 0
}
