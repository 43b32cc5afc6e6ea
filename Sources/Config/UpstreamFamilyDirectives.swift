/// The directives every upstream module has under its own prefix (`proxy_connect_timeout`,
/// `fastcgi_connect_timeout`, …), each module's on its own `ProxySettings`: one parser for all of them.
enum UpstreamFamily {
    static func specs(_ prefix: String, _ kp: WritableKeyPath<HTTPSettings, ProxySettings>) -> [DirectiveSpec] {
        func k<T>(_ field: WritableKeyPath<ProxySettings, Setting<T>>) -> WritableKeyPath<HTTPSettings, Setting<T>> {
            kp.appending(path: field)
        }
        return [
            Directives.msecSetting(prefix + "_connect_timeout", k(\.$connectTimeout)),
            Directives.msecSetting(prefix + "_send_timeout", k(\.$sendTimeout)),
            Directives.msecSetting(prefix + "_read_timeout", k(\.$readTimeout)),
            Directives.msecSetting(prefix + "_next_upstream_timeout", k(\.$nextUpstreamTimeout)),
            Directives.numberSetting(prefix + "_next_upstream_tries", k(\.$nextUpstreamTries)),
            Directives.spec(prefix + "_next_upstream", .httpAll, .oneOrMore) { call in
                try Directives.setOnce(call, k(\.$nextUpstream), try failures(call, NextUpstream.names))
            },
            Directives.noEffectWhenOn(Directives.flagSetting(prefix + "_buffering", k(\.$buffering)),
                                      "responses are relayed as they arrive, at most 256 kB waiting for a slow client, never spooled to a file"),
            Directives.flagSetting(prefix + "_request_buffering", k(\.$requestBuffering)),
            Directives.sizeSetting(prefix + "_buffer_size", k(\.$bufferSize)),
            Directives.accepted(prefix + "_buffers", .httpAll, .two, "a response is relayed through one 16 kB buffer as it arrives"),
            Directives.accepted(prefix + "_busy_buffers_size", .httpAll, .one, "a response is relayed through one 16 kB buffer as it arrives"),
            // Vigil relays a response as it arrives and never spools one to a temporary file: as nginx with
            // *_max_temp_file_size 0, whatever the size asked.
            Directives.spec(prefix + "_max_temp_file_size", .httpAll, .one) { call in _ = try Directives.sizeArg(call, call.words[1]) },
            Directives.spec(prefix + "_temp_file_write_size", .httpAll, .one) { call in _ = try Directives.sizeArg(call, call.words[1]) },
            Directives.flagSetting(prefix + "_pass_request_headers", k(\.$passRequestHeaders)),
            Directives.flagSetting(prefix + "_pass_request_body", k(\.$passRequestBody)),
            Directives.flagSetting(prefix + "_intercept_errors", k(\.$interceptErrors)),
            Directives.flagSetting(prefix + "_force_ranges", k(\.$forceRanges)),
            Directives.spec(prefix + "_hide_header", .httpAll, .one) { call in
                Directives.withSettings(call) { $0[keyPath: kp].hideHeaders.append(call.words[1].lowercased()) }
            },
            Directives.spec(prefix + "_pass_header", .httpAll, .one) { call in
                Directives.withSettings(call) { $0[keyPath: kp].passHeaders.append(call.words[1].lowercased()) }
            },
            Directives.spec(prefix + "_ignore_headers", .httpAll, .oneOrMore) { call in
                var set: IgnoredUpstreamHeaders = []
                for v in call.args {
                    guard let option = IgnoredUpstreamHeaders.names[v.lowercased()] else { throw call.error("invalid value \"\(v)\"") }
                    set.formUnion(option)
                }
                // A bitmask in nginx: a level's directives add up.
                Directives.withSettings(call) { s in
                    let before = s[keyPath: k(\.$ignoreHeaders)]
                    s[keyPath: k(\.$ignoreHeaders)].wrappedValue = before.isSet ? before.wrappedValue.union(set) : set
                }
            },
            Directives.spec(prefix + "_bind", .httpAll, .oneOrTwo) { call in
                if call.words.count == 3 {
                    guard call.words[2] == "transparent" else { throw call.invalidParameter(call.words[2]) }
                    throw call.error("the \"transparent\" parameter of \"\(call.name)\" is not supported by vigil")
                }
                let value = call.words[1] == "off" ? nil : RewriteDirectives.lenientTemplate(call, call.words[1])
                try Directives.setOnce(call, k(\.$bind), value)
            },
            Directives.spec(prefix + "_store", .httpAll, .one) { call in
                let store: ProxyStore
                switch call.words[1] {
                case "off": store = .off
                case "on": store = .requestFilename
                case let path: store = .path(try RewriteDirectives.template(call, path))
                }
                try Directives.setOnce(call, k(\.$store), store)
            },
            Directives.spec(prefix + "_store_access", .httpAll, Arity(min: 1, max: 3)) { call in
                // nginx's access slot: user's rw unless `user:` says otherwise.
                var access: UInt32 = 0, user: UInt32 = 0o600
                for word in call.args {
                    let parts = word.split(separator: ":", maxSplits: 1)
                    let shifts: [Substring: UInt32] = ["user": 6, "group": 3, "all": 0]
                    guard parts.count == 2, let shift = shifts[parts[0]], parts[1] == "rw" || parts[1] == "r" else {
                        throw call.error("invalid value \"\(word)\"")
                    }
                    if parts[0] == "user" { user = 0 }
                    access |= (parts[1] == "rw" ? 6 : 4) << shift
                }
                try Directives.setOnce(call, k(\.$storeAccess), access | user)
            },
        ] + CacheDirectives.specs(prefix, kp)
    }

    /// `*_next_upstream` and `*_cache_use_stale`: failure names, `off` alone.
    static func failures(_ call: Call, _ names: [String: NextUpstream]) throws -> NextUpstream {
        var set: NextUpstream = []
        for v in call.args {
            guard let option = names[v] else { throw call.error("invalid value \"\(v)\"") }
            set.formUnion(option)
        }
        if call.args.contains("off") && call.args.count > 1 { throw call.error("invalid value \"off\"") }
        return set
    }
}
