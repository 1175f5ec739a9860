import LNTransport

/// `BOLT8Machine`, the act and frame decoder `BOLT8Handler` runs, on arbitrary bytes in arbitrary
/// fragmentation. Input: byte 0 picks the machine's state, byte 1 how the rest is cut into reads.
///
///   0: responder awaiting act one      2: responder awaiting act three
///   1: initiator awaiting act two      3: established, reading raw frame bytes
///   4: established, reading real frames: the rest is a list of messages (a length byte, or 255
///      then a 2-byte length, then the bytes), sealed by the peer; byte 2 bit 0 says whether one
///      bit of the stream, at the offset in bytes 3-4, is flipped.
///
/// Properties: never a crash; every action is consistent (ranges inside the consumed bytes, nothing
/// after `close`, everything consumed after `close`); the end of stream is reported exactly when an
/// act or frame is unfinished; sealed frames come out exactly as sent, or, with a flipped bit, the
/// messages before the damaged frame come out and then a frame MAC failure.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBOLT8(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard input.count >= 2 else { return 0 }
    let mode = input[0] % 5
    var cuts = Cuts(seed: input[1])
    let rest = input[2...]

    switch mode {
    case 0, 1, 2, 3:
        var feeder = Feeder(machine: [fixtures.awaitingActOne, fixtures.awaitingActTwo, fixtures.awaitingActThree, fixtures.receiver][Int(mode)])
        feeder.feed(rest, cutting: &cuts)
        feeder.finish()
    default:
        guard rest.count >= 3 else { return 0 }
        let flip = rest[rest.startIndex] & 1 == 1
        let flipAt = Int(rest[rest.startIndex + 1]) << 8 | Int(rest[rest.startIndex + 2])
        var messages: [[UInt8]] = []
        var at = rest.startIndex + 3
        var total = 0
        while at < rest.endIndex, total < 1 << 20 {
            var length = Int(rest[at]); at += 1
            if length == 255, at + 2 <= rest.endIndex {
                length = Int(rest[at]) << 8 | Int(rest[at + 1]); at += 2
            }
            let available = min(length, rest.endIndex - at)
            // Short inputs still make long messages: the bytes given, then their index repeated.
            var message = Array(rest[at..<at + available])
            message += (0..<(length - available)).map { UInt8(truncatingIfNeeded: $0) }
            at += available
            messages.append(message)
            total += length + 34
        }
        var sender = fixtures.sender
        var stream: [UInt8] = []
        var frameEnds: [Int] = []
        for message in messages {
            var frame = [UInt8](repeating: 0, count: message.count + MessageEncryptor.overhead)
            message.withUnsafeBytes { m in frame.withUnsafeMutableBytes { f in _ = try! sender.seal(m, into: f) } }
            stream += frame
            frameEnds.append(stream.count)
        }
        var damagedFrame: Int?
        if flip, !stream.isEmpty {
            let offset = flipAt % stream.count
            stream[offset] ^= 1
            damagedFrame = frameEnds.firstIndex { offset < $0 }
        }
        var feeder = Feeder(machine: fixtures.receiver)
        feeder.feed(stream[...], cutting: &cuts)
        if let damagedFrame {
            precondition(feeder.delivered == Array(messages[..<damagedFrame]), "messages before the damaged frame")
            guard case .badFrameMAC = feeder.error else { fatalError("a flipped bit gave \(String(describing: feeder.error))") }
        } else {
            precondition(feeder.error == nil, "sealed frames failed: \(feeder.error!)")
            precondition(feeder.delivered == messages, "sealed frames came out different")
            precondition(feeder.pending.isEmpty)
        }
        feeder.finish()
    }
    return 0
}

/// Feeds a machine as `BOLT8Handler` does, checking every action.
struct Feeder {
    var machine: BOLT8Machine
    var pending: [UInt8] = []
    var delivered: [[UInt8]] = []
    var error: TransportError?

    mutating func feed<C: Collection<UInt8>>(_ bytes: C, cutting cuts: inout Cuts) {
        var start = bytes.startIndex
        while start != bytes.endIndex {
            let end = bytes.index(start, offsetBy: cuts.next(), limitedBy: bytes.endIndex) ?? bytes.endIndex
            read(bytes[start..<end])
            start = end
        }
    }

    mutating func read<C: Collection<UInt8>>(_ chunk: C) {
        pending.append(contentsOf: chunk)
        var actions: [BOLT8Machine.Action] = []
        let closedBefore = machine.isClosed
        let consumed = pending.withUnsafeMutableBytes { buffer in
            let consumed = machine.receive(buffer, actions: &actions)
            precondition(consumed >= 0 && consumed <= buffer.count, "consumed \(consumed) of \(buffer.count)")
            for action in actions {
                precondition(error == nil, "an action after close")
                switch action {
                case .deliver(let range):
                    precondition(range.lowerBound >= 0 && range.upperBound <= consumed, "delivered \(range) outside \(consumed) consumed bytes")
                    precondition(range.count <= 65535)
                    delivered.append(Array(buffer[range]))
                case .close(let failure):
                    error = failure
                    precondition(consumed == buffer.count, "bytes left after close")
                case .send(let act):
                    precondition(act.count == 50 || act.count == 66)
                case .handshakeCompleted:
                    break
                }
            }
            return consumed
        }
        precondition(!closedBefore || actions.isEmpty, "a closed machine acted")
        precondition(machine.isClosed == (error != nil), "closed without saying why, or the reverse")
        pending.removeFirst(consumed)
    }

    /// Ends the stream: an error exactly when something was left unfinished.
    mutating func finish() {
        let wasClosed = machine.isClosed
        let truncation = machine.end()
        precondition(machine.isClosed)
        if wasClosed {
            precondition(truncation == nil, "an error reported twice")
        } else if let truncation {
            guard case .truncated(let expected, let got, _) = truncation else { fatalError("end() gave \(truncation)") }
            precondition(got == pending.count && got < expected, "end() says \(got) of \(expected), \(pending.count) held")
        } else {
            precondition(pending.isEmpty, "a clean end with \(pending.count) bytes held")
        }
    }
}

/// Read sizes drawn from one seed byte: 0 means one read, otherwise a small generator.
struct Cuts {
    var state: UInt32
    let whole: Bool

    init(seed: UInt8) {
        state = UInt32(seed) &* 2_654_435_761 | 1
        whole = seed == 0
    }

    mutating func next() -> Int {
        if whole { return Int.max / 2 }
        state ^= state << 13; state ^= state >> 17; state ^= state << 5
        // Mostly short reads (inside headers and acts), sometimes long ones.
        return state % 4 == 0 ? Int(state >> 8 % 4096) + 1 : Int(state >> 8 % 40) + 1
    }
}

/// The Appendix A keys; machines are values, so each input starts from a copy of these.
struct Fixtures: Sendable {
    let awaitingActOne: BOLT8Machine
    let awaitingActTwo: BOLT8Machine
    let awaitingActThree: BOLT8Machine
    /// Both ends of an established connection: `sender` seals what `receiver` reads.
    let sender: BOLT8Machine
    let receiver: BOLT8Machine
}

let fixtures: Fixtures = {
    let initiatorSecret = try! NodeSecret(hex: String(repeating: "11", count: 32))
    let responderSecret = try! NodeSecret(hex: String(repeating: "21", count: 32))
    var initiator = BOLT8Machine(role: .initiator(remote: responderSecret.nodeID), localSecret: initiatorSecret,
                                 ephemeral: try! NodeSecret(hex: String(repeating: "12", count: 32)))
    var responder = BOLT8Machine(role: .responder, localSecret: responderSecret,
                                 ephemeral: try! NodeSecret(hex: String(repeating: "22", count: 32)))
    let awaitingActOne = responder
    var actOne = initiator.start()!
    let awaitingActTwo = initiator
    var actions: [BOLT8Machine.Action] = []
    _ = actOne.withUnsafeMutableBytes { responder.receive($0, actions: &actions) }
    guard case .send(var actTwo) = actions.first else { fatalError("no act two") }
    let awaitingActThree = responder
    actions = []
    _ = actTwo.withUnsafeMutableBytes { initiator.receive($0, actions: &actions) }
    guard case .send(var actThree) = actions.first else { fatalError("no act three") }
    actions = []
    _ = actThree.withUnsafeMutableBytes { responder.receive($0, actions: &actions) }
    precondition(initiator.isEstablished && responder.isEstablished)
    return Fixtures(awaitingActOne: awaitingActOne, awaitingActTwo: awaitingActTwo, awaitingActThree: awaitingActThree,
                    sender: initiator, receiver: responder)
}()
