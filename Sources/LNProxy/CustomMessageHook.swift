import Foundation
import LNRelay
import LNWire
import Logging
import NIOConcurrencyHelpers
import NIOPosix


/// Runs `--custommsg-hook CMD` for one custom message, in the manner of Core Lightning's custommsg
/// hook: the command gets `{"peer_id", "direction", "payload"}` on stdin and answers
/// `{"result": "continue" | "drop" | "replace", "payload": HEX}` on stdout. A hook that fails,
/// answers garbage or runs past the timeout is logged and the message continues.
struct CustomMessageHook: Sendable {
    let command: String
    let timeout: TimeInterval

    /// Runs the hook off the event loop, on NIO's blocking-I/O thread pool (running a process and
    /// reading its output block); `completion` gets the verdict and, when the hook misbehaved, why it
    /// was ignored. It is called exactly once. The timeout is a timer on a dispatch queue that kills
    /// the hook: no thread sits waiting for it.
    func run(peerID: String?, direction: Direction, message: [UInt8], completion: @escaping @Sendable (HookVerdict, String?) -> Void) {
        let input = JSONValue.object([("peer_id", peerID.map(JSONValue.string) ?? .null), ("direction", .string(direction.rawValue)),
                                      ("payload", .string(HexString.encode(message)))]).description + "\n"
        let command = self.command
        let timeout = self.timeout
        let once = Once(completion)
        NIOThreadPool.singleton.submit { state in
            guard case .active = state else {
                once.finish(.continue, "lnrr is shutting down")
                return
            }
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
                once.finish(.continue, "cannot run \(command): \(error)")
                return
            }
            let pid = process.processIdentifier
            let deadline = DispatchWorkItem {
                // Answer first, then kill: the pool thread below sees end of file once the hook is gone.
                if once.finish(.continue, "timed out after \(Int(timeout * 1000)) ms") { kill(pid, SIGKILL) }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: deadline)
            try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
            let data = (try? stdout.fileHandleForReading.readToEnd()) ?? Data()
            deadline.cancel()
            process.waitUntilExit()
            guard !once.done else { return }
            guard process.terminationStatus == 0 else {
                once.finish(.continue, "exited with status \(process.terminationStatus)")
                return
            }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let reply = try? JSONValue.parse(text), case .string(let result)? = reply["result"] else {
                once.finish(.continue, "answered something that is not {\"result\": ...}: \(text.prefix(80))")
                return
            }
            switch result {
            case "continue": once.finish(.continue, nil)
            case "drop": once.finish(.drop, nil)
            case "replace":
                guard case .string(let hex)? = reply["payload"], let bytes = HexString.decode(hex), bytes.count >= 2, bytes.count <= 65535 else {
                    once.finish(.continue, "answered replace without a valid hex payload")
                    return
                }
                once.finish(.replace(bytes), nil)
            default:
                once.finish(.continue, "answered an unknown result '\(result)'")
            }
        }
    }

    /// Calls the completion at most once: the timeout and the hook's own answer race.
    final class Once: Sendable {
        private let completion: @Sendable (HookVerdict, String?) -> Void
        private let finished = NIOLockedValueBox(false)

        init(_ completion: @escaping @Sendable (HookVerdict, String?) -> Void) { self.completion = completion }

        var done: Bool { finished.withLockedValue { $0 } }

        /// Delivers the verdict unless one was delivered already; true if this call delivered it.
        @discardableResult
        func finish(_ verdict: HookVerdict, _ why: String?) -> Bool {
            let first = finished.withLockedValue { wasDone in
                defer { wasDone = true }
                return !wasDone
            }
            if first { completion(verdict, why) }
            return first
        }
    }
}
