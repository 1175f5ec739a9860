import LNWire
import XCTest

/// The one hex rule (see HexString's doc comment), as every caller relies on it.
final class HexStringTests: XCTestCase {
    func testEncodeIsLowercaseWithoutPrefix() {
        XCTAssertEqual(HexString.encode([0x00, 0x0f, 0xab, 0xff]), "000fabff")
        XCTAssertEqual(HexString.encode([UInt8]()), "")
    }

    func testDecodeAcceptsEitherCasePrefixAndSurroundingWhitespace() {
        XCTAssertEqual(HexString.decode("00FfaB"), [0x00, 0xff, 0xab])
        XCTAssertEqual(HexString.decode("0xcafe"), [0xca, 0xfe])
        XCTAssertEqual(HexString.decode("0XCAFE"), [0xca, 0xfe])
        XCTAssertEqual(HexString.decode(" \t8001\r\n"), [0x80, 0x01])
        XCTAssertEqual(HexString.decode("  0x8001 "), [0x80, 0x01])
        XCTAssertEqual(HexString.decode(""), [])
        XCTAssertEqual(HexString.decode("0x"), [])
    }

    func testDecodeRejectsInnerSpaceOddLengthAndOtherCharacters() {
        XCTAssertNil(HexString.decode("80 01"))
        XCTAssertNil(HexString.decode("800"))
        XCTAssertNil(HexString.decode("80:01"))
        XCTAssertNil(HexString.decode("0x0x80"))
        XCTAssertNil(HexString.decode("zz"))
        XCTAssertNil(HexString.decode("x80"))
    }

    func testRoundTripOfEveryByte() {
        let all = (0...255).map { UInt8($0) }
        XCTAssertEqual(HexString.decode(HexString.encode(all)), all)
    }
}
