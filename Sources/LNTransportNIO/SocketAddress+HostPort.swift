import LNTransport
import NIOCore

extension SocketAddress {
    /// `127.0.0.1:9735`, `[::1]:9735`: the one way lnrr prints an address, in logs and JSON alike
    /// (`HostPort.description`), without NIO's `[IPv4]host/ip:port` decoration.
    public var hostPortDescription: String {
        guard let ip = ipAddress, let port else { return pathname ?? "\(self)" }
        return HostPort(host: ip, port: port).description
    }
}
