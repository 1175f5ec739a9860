import Foundation
import LNTransport

/// The operator-held node keys the proxy may speak as, indexed by node id.
///
/// The proxy answers a dialer's handshake as the node it fronts and, when it holds the dialer's key
/// too, dials upstream as the dialer: then neither node can tell the proxy is there.
public struct Keyring: Sendable {
    /// Where the keys came from, for messages.
    public let source: String
    private var secrets: [NodeID: NodeSecret]

    /// Loads every `*.key` file in `directory` (lnrr key-file format; owner-only unless
    /// `allowInsecure`).
    public init(directory: String, allowInsecure: Bool = false) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw KeyringError.notADirectory(directory)
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".key") }.sorted()
        } catch {
            throw KeyringError.unreadable(directory, "\(error)")
        }
        var secrets: [NodeID: NodeSecret] = [:]
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            let secret = try KeyFile.read(path: path, allowInsecure: allowInsecure)
            secrets[secret.nodeID] = secret
        }
        self.source = directory
        self.secrets = secrets
    }

    /// A keyring holding exactly `secrets` (tests, the demo).
    public init(_ secrets: [NodeSecret], source: String = "memory") {
        self.source = source
        self.secrets = Dictionary(secrets.map { ($0.nodeID, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The secret of `node`, if the operator holds it.
    public func secret(for node: NodeID) -> NodeSecret? { secrets[node] }

    /// Adds (or replaces) a key.
    public mutating func insert(_ secret: NodeSecret) { secrets[secret.nodeID] = secret }

    /// Node ids of every key held, sorted by hex.
    public var nodeIDs: [NodeID] { secrets.keys.sorted { $0.hex < $1.hex } }

    public var count: Int { secrets.count }
}

/// Problems loading a keyring.
public enum KeyringError: Error, CustomStringConvertible, Equatable {
    case notADirectory(String)
    case unreadable(String, String)
    case missingKey(NodeID, keyring: String)

    public var description: String {
        switch self {
        case .notADirectory(let path):
            return "keyring \(path) is not a directory: pass --keys DIR, a folder of *.key files (make them with `lnrr keys new --out DIR/NAME.key`)"
        case .unreadable(let path, let why):
            return "cannot read keyring \(path): \(why)"
        case .missingKey(let node, let keyring):
            return "the keyring \(keyring) has no key for node \(node.hex): the proxy must answer as that node. Put its secret in a *.key file there (e.g. the value given to CLN's --dev-force-privkey)"
        }
    }
}
