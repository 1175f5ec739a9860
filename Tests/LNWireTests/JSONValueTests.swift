import Foundation
import LNWire
import XCTest

final class JSONValueTests: XCTestCase {
    /// The control socket crashed (SIGSEGV) on a request 38,000 arrays deep: the parser must refuse it.
    func testDeepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertThrowsError(try JSONValue.parse("{\"id\":\(deep)}")) { error in
            XCTAssertTrue("\(error)".contains("nested deeper than 64"), "\(error)")
        }
        let objects = String(repeating: "{\"a\":", count: 70_000) + "1" + String(repeating: "}", count: 70_000)
        XCTAssertThrowsError(try JSONValue.parse(objects))
    }

    func testNestingUpToTheLimitParses() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNoThrow(try JSONValue.parse(ok))
        let over = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        XCTAssertThrowsError(try JSONValue.parse(over))
    }

    /// RFC 8259 section 7: characters outside the BMP are escaped as a UTF-16 surrogate pair.
    func testSurrogatePairsDecodeToOneScalar() throws {
        XCTAssertEqual(try JSONValue.parse(#""\ud83d\ude00""#), .string("\u{1F600}"))
        XCTAssertEqual(try JSONValue.parse(#""\uD834\uDD1E x""#), .string("\u{1D11E} x"))
        // A lone half cannot be a scalar: replaced, and what follows is kept.
        XCTAssertEqual(try JSONValue.parse(#""\ud83dA""#), .string("\u{FFFD}A"))
        XCTAssertEqual(try JSONValue.parse(#""\ud83d\u0041""#), .string("\u{FFFD}A"))
    }

    /// Strings that need no escape are appended whole; the rest escape `"`, `\` and control
    /// characters (RFC 8259 section 7). Foundation's parser, another implementation, reads both back.
    func testWriteStringEscapesOnlyWhatJSONRequires() throws {
        let cases: [(String, String)] = [
            ("0102abcdef", #""0102abcdef""#),
            ("caf\u{E9} \u{1F600}", "\"caf\u{E9} \u{1F600}\""),
            ("a\"b\\c", #""a\"b\\c""#),
            ("line\nnext\t\u{01}", #""line\nnext\t\u0001""#),
        ]
        for (value, expected) in cases {
            var out = ""
            JSONValue.writeString(value, into: &out)
            XCTAssertEqual(out, expected)
            let decoded = try JSONSerialization.jsonObject(with: Data("[\(out)]".utf8)) as? [String]
            XCTAssertEqual(decoded, [value])
        }
    }
}
