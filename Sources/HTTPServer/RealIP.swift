#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP

/// An address realip put in the client's place: as nginx prints it, its bytes, and its port (0: none).
public final class RealAddress {
    public let text: String
    public let bytes: [UInt8]
    public let port: UInt16

    init(bytes: [UInt8], port: UInt16) {
        self.bytes = bytes
        self.port = port
        text = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf in
            bytes.withUnsafeBytes { _ = inet_ntop(bytes.count == 16 ? AF_INET6 : AF_INET, $0.baseAddress, buf.baseAddress, 64) }
            return String(cString: buf.baseAddress!)
        }
    }
}

/// nginx's realip module: when the client's peer is trusted (`set_real_ip_from`), the address it names in
/// `real_ip_header` (or the PROXY protocol's) becomes the client's for the rest of the request. As nginx, it
/// runs in the post-read phase with the server's settings and again before the access phase with the
/// location's, and the first address found stands for the whole request.
enum RealIP {
    /// nginx's post-read phase: before the server's rewrite script (and the body size check).
    static func postRead(_ r: RequestContext) {
        guard r.service.config.http?.usesRealIP == true else { return }
        find(r, r.service.scope(server: r.server, location: nil).settings.realIP)
    }

    /// nginx's preaccess phase: the location the request ended in, when no earlier phase found an address.
    static func preAccess(_ r: RequestContext) {
        guard r.service.config.http?.usesRealIP == true else { return }
        find(r, r.settings.realIP)
    }

    private static func find(_ r: RequestContext, _ s: RealIPSettings) {
        let client = r.client
        guard !s.from.isEmpty, client.realAddress == nil else { return }
        let peer = client.addressBytes
        let found: (bytes: [UInt8], port: UInt16)?
        switch s.header {
        case .proxyProtocol:
            guard let pp = client.proxyProtocol else { return }
            found = Array(pp.sourceAddress.utf8).withUnsafeBytes { ForwardedAddress.find(peer, [$0], s.from, recursive: s.recursive) }
                .map { ($0.bytes, pp.sourcePort) }
        case .forwardedFor:
            found = r.head.withFields { block, fields in
                let values = fields.lazy.filter { RequestParser.matches(block[$0.name], lowercase: "x-forwarded-for") }
                    .map { UnsafeRawBufferPointer(rebasing: block[$0.value]) }
                return values.isEmpty ? nil : ForwardedAddress.find(peer, Array(values), s.from, recursive: s.recursive)
            }
        case .field(let name):
            found = r.withHeader(name) { ForwardedAddress.find(peer, [$0], s.from, recursive: s.recursive) } ?? nil
        }
        if let found { client.realAddress = RealAddress(bytes: found.bytes, port: found.port) }
    }
}
