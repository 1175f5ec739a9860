@testable import LNTransport

/// Drives a `BOLT8Machine` exactly as `BOLT8Handler` does: bytes the machine did not consume are
/// kept and handed back first with the next ones; delivered ranges are read out of the same buffer
/// the machine decrypted in place.
struct MachineDriver {
    /// What feeding bytes produced, with delivered messages copied out for comparison.
    enum Output: Equatable, CustomStringConvertible {
        case send([UInt8])
        case handshakeCompleted(NodeID)
        case message([UInt8])
        case close(TransportError)

        var description: String {
            switch self {
            case .send(let bytes): return "send(\(HexString.encode(bytes)))"
            case .handshakeCompleted(let id): return "handshakeCompleted(\(id.hex))"
            case .message(let bytes): return "message(\(bytes.count) B)"
            case .close(let error): return "close(\(error))"
            }
        }
    }

    var machine: BOLT8Machine
    /// Bytes read but not consumed: the handler's cumulation.
    private(set) var pending: [UInt8] = []

    init(_ role: BOLT8Machine.Role, _ secret: NodeSecret, ephemeral: NodeSecret? = nil) {
        machine = BOLT8Machine(role: role, localSecret: secret, ephemeral: ephemeral)
    }

    mutating func feed<C: Collection>(_ bytes: C) -> [Output] where C.Element == UInt8 {
        pending.append(contentsOf: bytes)
        var actions: [BOLT8Machine.Action] = []
        var outputs: [Output] = []
        let consumed = pending.withUnsafeMutableBytes { buffer in
            let consumed = machine.receive(buffer, actions: &actions)
            for action in actions {
                switch action {
                case .send(let bytes): outputs.append(.send(bytes))
                case .handshakeCompleted(let id): outputs.append(.handshakeCompleted(id))
                case .deliver(let range): outputs.append(.message(Array(buffer[range])))
                case .close(let error): outputs.append(.close(error))
                }
            }
            return consumed
        }
        pending.removeFirst(consumed)
        return outputs
    }

    /// Feeds `chunks` one after another and returns everything they produced.
    mutating func feed(chunks: [ArraySlice<UInt8>]) -> [Output] {
        chunks.flatMap { feed($0) }
    }

    mutating func seal(_ message: [UInt8]) throws -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: message.count + MessageEncryptor.overhead)
        let length = try message.withUnsafeBytes { m in
            try frame.withUnsafeMutableBytes { f in try machine.seal(m, into: f) }
        }
        return Array(frame[..<length])
    }

    mutating func end() -> TransportError? { machine.end() }
}

/// A deterministic generator (SplitMix64) so failures reproduce.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

/// BOLT 8 Appendix A's keys and transcript: the independent truth the machine is checked against.
enum Vectors {
    static let initiatorLS = "1111111111111111111111111111111111111111111111111111111111111111"
    static let initiatorE = "1212121212121212121212121212121212121212121212121212121212121212"
    static let responderLS = "2121212121212121212121212121212121212121212121212121212121212121"
    static let responderE = "2222222222222222222222222222222222222222222222222222222222222222"
    static let rsPub = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7"
    static let lsPub = "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa"

    static let actOne = "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a"
    static let actTwo = "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"
    static let actThree = "00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba"
    static let sk = "969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9"
    static let rk = "bb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442"
    static let ck = "919219dbb2920afa8db80f9a51787a840bcf111ed8d588caf9ab4be716e42b01"
    /// "transport-message test": the initiator's frames for "hello" number 0, 1, 500, 501, 1000, 1001.
    static let helloFrames: [Int: String] = [
        0: "cf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95",
        1: "72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1",
        500: "178cb9d7387190fa34db9c2d50027d21793c9bc2d40b1e14dcf30ebeeeb220f48364f7a4c68bf8",
        501: "1b186c57d44eb6de4c057c49940d79bb838a145cb528d6e8fd26dbe50a60ca2c104b56b60e45bd",
        1000: "4a2f3cc3b5e78ddb83dcb426d9863d9d9a723b0337c89dd0b005d89f8d3c05c52b76b29b740f09",
        1001: "2ecd8c8a5629d0d02ab457a0fdd0f7b90a192cd46be5ecb6ca570bfc5e268338b1a16cf4ef2d36",
    ]

    static func bytes(_ hex: String) -> [UInt8] { HexString.decode(hex)! }

    /// The initiator of the vectors (ls 0x11.., e 0x12..), dialing the responder's node id.
    static func initiator() -> MachineDriver {
        MachineDriver(.initiator(remote: try! NodeID(hex: rsPub)), try! NodeSecret(hex: initiatorLS),
                      ephemeral: try! NodeSecret(hex: initiatorE))
    }

    /// The responder of the vectors (ls 0x21.., e 0x22..).
    static func responder() -> MachineDriver {
        MachineDriver(.responder, try! NodeSecret(hex: responderLS), ephemeral: try! NodeSecret(hex: responderE))
    }
}
