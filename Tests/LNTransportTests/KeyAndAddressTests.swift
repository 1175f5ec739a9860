import Foundation
import Testing
@testable import LNTransport

@Suite("Node keys, key files and addresses")
struct KeyAndAddressTests {
    func temporaryPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lnrr-keys-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    @Test("secret 0x11..11 has the node id BOLT 8's vectors give it")
    func knownNodeID() throws {
        // From BOLT 8 Appendix A: ls.priv 0x11.. has ls.pub 0x034f35...
        let secret = try NodeSecret(hex: String(repeating: "11", count: 32))
        #expect(secret.nodeID.hex == "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa")
        #expect(!secret.description.contains("1111"))
        #expect(!"\(secret)".contains("1111") && !String(reflecting: secret).contains("1111"))
    }

    @Test("invalid secrets and node ids are typed errors")
    func invalid() {
        #expect(throws: KeyError.outOfRange) { try NodeSecret(hex: String(repeating: "00", count: 32)) }
        #expect(throws: KeyError.outOfRange) { try NodeSecret(hex: "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141") }
        #expect(throws: KeyError.wrongLength(4)) { try NodeSecret(hex: "abcd") }
        #expect(throws: KeyError.notHex) { try NodeSecret(hex: String(repeating: "zz", count: 32)) }
        #expect(throws: KeyError.self) { try NodeID(hex: "04" + String(repeating: "11", count: 32)) }
        #expect(throws: KeyError.self) { try NodeID(hex: "02" + String(repeating: "00", count: 32)) }
    }

    @Test("key files: 0600, round trip, whitespace tolerated, never overwritten")
    func keyFileRoundTrip() throws {
        let path = temporaryPath("a.key")
        let secret = NodeSecret.random()
        try KeyFile.write(secret, to: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.count == 65 && text.hasSuffix("\n"))
        #expect(try KeyFile.read(path: path).nodeID == secret.nodeID)
        #expect(throws: KeyFileError.exists(path)) { try KeyFile.write(secret, to: path) }

        let pasted = temporaryPath("pasted.key")
        try "\n  \(String(repeating: "AB", count: 32))  \r\n".write(toFile: pasted, atomically: false, encoding: .utf8)
        chmod(pasted, 0o600)
        #expect(try KeyFile.read(path: pasted).nodeID == (try NodeSecret(hex: String(repeating: "ab", count: 32))).nodeID)
    }

    @Test("group- or world-readable key files are refused with the fix, unless allowed")
    func insecureKeyFile() throws {
        let path = temporaryPath("loose.key")
        let hex = String(repeating: "42", count: 32)
        try (hex + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        do {
            _ = try KeyFile.read(path: path)
            Issue.record("a 0644 key file was accepted")
        } catch let error as KeyFileError {
            #expect(error.description.contains("chmod 600 \(path)"))
            #expect(!error.description.contains(hex))
        }
        #expect(try KeyFile.read(path: path, allowInsecure: true).nodeID == (try NodeSecret(hex: hex)).nodeID)
        chmod(path, 0o600)
        #expect(throws: Never.self) { try KeyFile.read(path: path) }
    }

    @Test("malformed key files name the file, not the content")
    func malformedKeyFile() throws {
        let path = temporaryPath("bad.key")
        try "not a key\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o600)
        #expect(throws: KeyFileError.self) { try KeyFile.read(path: path) }
        #expect(throws: KeyFileError.self) { try KeyFile.read(path: path + ".missing") }
    }

    @Test("NODEID@HOST:PORT addresses")
    func addresses() throws {
        let id = "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa"
        let a = try PeerAddress(parsing: "\(id)@127.0.0.1:9736")
        #expect(a.nodeID.hex == id && a.host == "127.0.0.1" && a.port == 9736)
        let b = try PeerAddress(parsing: "\(id)@node.example")
        #expect(b.host == "node.example" && b.port == 9735)
        let c = try PeerAddress(parsing: "\(id)@[::1]:1234")
        #expect(c.host == "::1" && c.port == 1234 && c.description == "\(id)@[::1]:1234")
        for bad in ["\(id)127.0.0.1:9735", "nothex@127.0.0.1:1", "\(id)@:9735", "\(id)@host:99999", "\(id)@host:x", "\(id)@::1:9735", "\(id)@[::1"] {
            #expect(throws: AddressError.self, "\(bad)") { try PeerAddress(parsing: bad) }
        }
        #expect(try HostPort(parsing: "0.0.0.0:0").port == 0)
        #expect(throws: AddressError.self) { try HostPort(parsing: "127.0.0.1") }
    }
}
