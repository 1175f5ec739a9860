import Foundation
import LNTransport
import NIOCore
import NIOPosix

/// The one translation of network errors into sentences a user can act on: what happened, to
/// which address, and what to do, instead of NIO's internals (`bind(descriptor:ptr:bytes:)`,
/// `SingleConnectionFailure(target: [IPv4]...)`). Every command that listens or dials uses it.
public enum NetworkErrorText {
    /// "cannot listen on ADDRESS: why; what to do".
    public static func listening(on address: String, _ error: Error) -> String {
        "cannot listen on \(address): " + reason(error, listening: true)
    }

    /// "cannot connect to ADDRESS: why; what to do".
    public static func connecting(to address: String, _ error: Error) -> String {
        "cannot connect to \(address): " + reason(error, listening: false)
    }

    /// The cause, in words, of a socket error (the address is said by the caller).
    public static func reason(_ error: Error, listening: Bool) -> String {
        if let connection = error as? NIOConnectionError {
            if let first = connection.connectionErrors.first { return reason(first.error, listening: listening) }
            if connection.dnsAError != nil || connection.dnsAAAAError != nil {
                return "cannot resolve the host name \(connection.host); check its spelling or give an IP address"
            }
            return "no address to try for \(connection.host)"
        }
        if let channel = error as? ChannelError, case .connectTimeout(let timeout) = channel {
            return "no answer within \(timeout.nanoseconds / 1_000_000_000) s; check the host and port, and that no firewall drops the packets"
        }
        if error is SocketAddressError {
            return "cannot resolve the host name; check its spelling or give an IP address"
        }
        guard let io = error as? IOError else { return "\(error)" }
        switch io.errnoCode {
        case EADDRINUSE:
            return "the address is already in use: another process listens there (`ss -ltnp` shows which); stop it or choose another port (port 0 picks a free one)"
        case EADDRNOTAVAIL:
            return listening
                ? "this machine has no such address; listen on 127.0.0.1, 0.0.0.0 or one of its own addresses"
                : "the address cannot be used from this machine; check it"
        case EACCES:
            return "permission denied: ports below 1024 need privileges; choose a port from 1024 up"
        case ECONNREFUSED:
            return "connection refused: nothing listens there; start the node first, or check the port"
        case ETIMEDOUT:
            return "no answer (timed out); check the host and port, and that no firewall drops the packets"
        case EHOSTUNREACH, ENETUNREACH:
            return "no route to that host; check the address and the network"
        case ECONNRESET:
            return "the other end reset the connection"
        case EMFILE, ENFILE:
            return "lnrr has no file descriptors left (too many open files); raise the limit (`ulimit -n`) or serve fewer sessions at once"
        default:
            return String(cString: strerror(io.errnoCode)).lowercased()
        }
    }

    /// Whether `error` says this process ran out of file descriptors (EMFILE/ENFILE), which is
    /// lnrr's own limit and never the remote's fault.
    public static func isOutOfDescriptors(_ error: Error) -> Bool {
        if let connection = error as? NIOConnectionError {
            return connection.connectionErrors.contains { isOutOfDescriptors($0.error) }
        }
        guard let io = error as? IOError else { return false }
        return io.errnoCode == EMFILE || io.errnoCode == ENFILE
    }

    /// The likely cause of a handshake that failed on the dialling side, or nil: a node that
    /// closes during act two, or answers with the wrong key, is not the node id that was dialled.
    public static func dialHint(_ error: Error, address: String, nodeID: NodeID) -> String? {
        guard let transport = error as? TransportError else { return nil }
        switch transport {
        case .truncated(_, _, "act two"), .badActMAC(act: 2):
            return "likely cause: \(nodeID.hex) is not the node id of the node at \(address) "
                + "(a node closes the connection when act one is not meant for its key); check the NODEID in "
                + "NODEID@HOST:PORT (`lnrr keys id KEYFILE` prints a key file's node id)"
        default:
            return nil
        }
    }
}

/// A handshake error with the likely cause added, as `DialHintHandler` passes it on.
public struct DialFailure: Error, CustomStringConvertible {
    /// The error BOLT 8 reported.
    public var underlying: Error
    public var hint: String

    public var description: String { "\(underlying); \(hint)" }
}

/// Sits after the initiator's `BOLT8Handler` and adds the likely cause to handshake errors that
/// mean "wrong node id" (see `NetworkErrorText.dialHint`); other errors pass unchanged.
public final class DialHintHandler: ChannelInboundHandler {
    public typealias InboundIn = NIOAny

    let address: String
    let nodeID: NodeID

    public init(address: String, nodeID: NodeID) {
        self.address = address
        self.nodeID = nodeID
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let hint = NetworkErrorText.dialHint(error, address: address, nodeID: nodeID) {
            context.fireErrorCaught(DialFailure(underlying: error, hint: hint))
        } else {
            context.fireErrorCaught(error)
        }
    }
}
