import Core
/// nginx's realip module: `set_real_ip_from`, `real_ip_header`, `real_ip_recursive`.
enum RealIPDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("set_real_ip_from", .httpAll, .one) { call in
            let v = call.words[1]
            var nets: [CIDR]
            if let cidr = HTTPCore.parseCIDR(v) {
                if !cidr.hostBitsZero { call.warn("low address bits of \(v) are meaningless") }
                nets = [cidr]
            } else {
                // As nginx: a name is resolved now, each of its addresses trusted alone.
                guard let addrs = Resolver.resolve(host: v, port: 0), !addrs.isEmpty else {
                    throw call.error("host not found in set_real_ip_from \"\(v)\"")
                }
                nets = addrs.compactMap { IPAddress.bytes($0.host).map { CIDR(bytes: $0, prefix: $0.count * 8) } }
            }
            Directives.withSettings(call) { s in s.realIP.from = (s.realIP.$from.isSet ? s.realIP.from : []) + nets }
            Directives.http(call).usesRealIP = true
        },
        Directives.spec("real_ip_header", .httpAll, .one) { call in
            let v = call.words[1]
            let header: RealIPHeader = v == "X-Forwarded-For" ? .forwardedFor : v == "proxy_protocol" ? .proxyProtocol : .field(v.lowercased())
            try Directives.setOnce(call, \.realIP.$header, header)
        },
        Directives.flagSetting("real_ip_recursive", \.realIP.$recursive),
    ]
}
