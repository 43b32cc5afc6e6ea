/// nginx's gzip module (responses compressed on the fly for clients that accept gzip) and gzip_static.
enum GzipDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.flagSetting("gzip", \.gzip.$on, [.httpAll, .locationIf]),
        Directives.spec("gzip_types", .httpAll, .oneOrMore) { call in
            Directives.addTo(call, \.gzip.$types, call.args.map { $0.lowercased() })
        },
        Directives.spec("gzip_comp_level", .httpAll, .one) { call in
            guard let n = Values.plainNumber(call.words[1]), (1...9).contains(n) else {
                throw call.error("value must be between 1 and 9")
            }
            try Directives.setOnce(call, \.gzip.$compLevel, n)
        },
        Directives.sizeSetting("gzip_min_length", \.gzip.$minLength),
        Directives.spec("gzip_proxied", .httpAll, .oneOrMore) { call in
            var set: GzipProxied = []
            for v in call.args {
                guard let option = GzipProxied.names[v] else { throw call.error("invalid value \"\(v)\"") }
                set.formUnion(option)
            }
            try Directives.setOnce(call, \.gzip.$proxied, set)
        },
        Directives.flagSetting("gzip_vary", \.gzip.$vary),
        Directives.spec("gzip_http_version", .httpAll, .one) { call in
            guard call.words[1] == "1.0" || call.words[1] == "1.1" else { throw call.error("invalid value \"\(call.words[1])\"") }
            try Directives.setOnce(call, \.gzip.$httpVersionMinor, call.words[1] == "1.0" ? 0 : 1)
        },
        Directives.spec("gzip_disable", .httpAll, .oneOrMore) { call in
            // nginx's "msie6" mask: MSIE 4–6 without SV1.
            let res = try call.args.map { $0 == "msie6" ? try RewriteDirectives.regex(call, "MSIE [4-6]\\.(?!.*SV1)", caseless: false)
                                                      : try RewriteDirectives.regex(call, $0, caseless: true) }
            try Directives.setOnce(call, \.gzip.$disable, res)
        },
        Directives.accepted("gzip_buffers", .httpAll, .two, "compressed output goes out in 16 kB pieces"),
        Directives.spec("gzip_static", .httpAll, .one) { call in
            guard let mode = GzipStatic(rawValue: call.words[1].lowercased()) else { throw call.error("invalid value \"\(call.words[1])\"") }
            try Directives.setOnce(call, \.gzip.$staticFiles, mode)
        },
    ]
}
