import Foundation
import LNRelay
import LNWire
import Logging


/// Runs `--custommsg-hook CMD` for one custom message, in the manner of Core Lightning's custommsg
/// hook: the command gets `{"peer_id", "direction", "payload"}` on stdin and answers
/// `{"result": "continue" | "drop" | "replace", "payload": HEX}` on stdout. A hook that fails,
/// answers garbage or runs past the timeout is logged and the message continues.
struct CustomMessageHook: Sendable {
    let command: String
    let timeout: TimeInterval

    /// Runs the hook off the event loop; `completion` gets the verdict and, when the hook
    /// misbehaved, why it was ignored.
    func run(peerID: String?, direction: Direction, message: [UInt8], completion: @escaping @Sendable (HookVerdict, String?) -> Void) {
        let input = JSONValue.object([("peer_id", peerID.map(JSONValue.string) ?? .null), ("direction", .string(direction.rawValue)),
                                      ("payload", .string(HexString.encode(message)))]).description + "\n"
        let command = self.command
        let timeout = self.timeout
        DispatchQueue.global().async {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command]
            let stdin = Pipe(), stdout = Pipe()
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = FileHandle.standardError
            do {
                try process.run()
            } catch {
                completion(.continue, "cannot run \(command): \(error)")
                return
            }
            try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
            let finished = DispatchSemaphore(value: 0)
            let output = OutputBox()
            DispatchQueue.global().async {
                output.data = (try? stdout.fileHandleForReading.readToEnd()) ?? Data()
                finished.signal()
            }
            if finished.wait(timeout: .now() + timeout) == .timedOut {
                process.terminate()
                kill(process.processIdentifier, SIGKILL)
                completion(.continue, "timed out after \(Int(timeout * 1000)) ms")
                return
            }
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                completion(.continue, "exited with status \(process.terminationStatus)")
                return
            }
            let text = String(decoding: output.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let reply = try? JSONValue.parse(text), case .string(let result)? = reply["result"] else {
                completion(.continue, "answered something that is not {\"result\": ...}: \(text.prefix(80))")
                return
            }
            switch result {
            case "continue": completion(.continue, nil)
            case "drop": completion(.drop, nil)
            case "replace":
                guard case .string(let hex)? = reply["payload"], let bytes = HexString.decode(hex), bytes.count >= 2, bytes.count <= 65535 else {
                    completion(.continue, "answered replace without a valid hex payload")
                    return
                }
                completion(.replace(bytes), nil)
            default:
                completion(.continue, "answered an unknown result '\(result)'")
            }
        }
    }

    /// `@unchecked Sendable`: `data` is written by the reading thread exactly once, before it
    /// signals `finished`, and read by the waiting thread only after `finished.wait` returned
    /// `.success`; the semaphore orders the two. On a timeout the box is never read.
    final class OutputBox: @unchecked Sendable { var data = Data() }
}
