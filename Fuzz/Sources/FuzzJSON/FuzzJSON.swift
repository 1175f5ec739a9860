import LNWire

/// `JSONValue.parse` on arbitrary text (control-socket lines, hook replies and CLI arguments reach it).
/// Properties: it returns or throws `SyntaxError`, never crashes; what it returns, written out
/// compactly, parses again and writes out identically (lnrr's JSON output is always valid JSON).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    let text = String(decoding: input, as: UTF8.self)
    let value: JSONValue
    do {
        value = try JSONValue.parse(text)
    } catch is JSONValue.SyntaxError {
        return 0
    } catch {
        fatalError("JSONValue.parse threw \(type(of: error)), not SyntaxError")
    }
    let written = value.description
    guard let again = try? JSONValue.parse(written) else { fatalError("lnrr wrote JSON it cannot read: \(written)") }
    precondition(again.description == written, "writing is not stable: \(written) became \(again.description)")
    return 0
}
