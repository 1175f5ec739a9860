import LNWire
import XCTest

/// `WireMessage.type` is the one reader of the 2-byte big-endian type (BOLT 1), for arrays and for
/// any other byte collection the layers hold (slices, raw buffers).
final class WireMessageTypeTests: XCTestCase {
    func testBigEndianTypeOfArraysSlicesAndRawBuffers() {
        let ping: [UInt8] = [0x00, 0x12, 0x00, 0x04, 0x00, 0x00]
        XCTAssertEqual(WireMessage.type(ping), 18)
        XCTAssertEqual(WireMessage.type([0x80, 0x01, 0xca, 0xfe] as [UInt8]), 32769)
        let framed: [UInt8] = [0xff, 0x00, 0x10]
        XCTAssertEqual(WireMessage.type(framed[1...]), 16)
        ping.withUnsafeBytes { XCTAssertEqual(WireMessage.type($0), 18) }
    }

    func testRuntsHaveNoType() {
        XCTAssertNil(WireMessage.type([UInt8]()))
        XCTAssertNil(WireMessage.type([0x00] as [UInt8]))
        let one: [UInt8] = [0xff, 0x00]
        XCTAssertNil(WireMessage.type(one[1...]))
        [UInt8]().withUnsafeBytes { XCTAssertNil(WireMessage.type($0)) }
    }
}
