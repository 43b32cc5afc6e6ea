import Script

/// nginx's upstream cache directives, one parser for every module's prefix (`proxy_cache*`, `fastcgi_cache*`,
/// `scgi_cache*`, `uwsgi_cache*`), and `*_cache_path`, which declares a cache: its directory and keys zone.
enum CacheDirectives {
    static func specs(_ prefix: String, _ kp: WritableKeyPath<HTTPSettings, ProxySettings>) -> [DirectiveSpec] {
        let c = kp.appending(path: \.cache)
        func k<T>(_ field: WritableKeyPath<CacheSettings, Setting<T>>) -> WritableKeyPath<HTTPSettings, Setting<T>> {
            c.appending(path: field)
        }
        var specs = [
            Directives.spec(prefix + "_cache_path", .http, .oneOrMore) { call in try declare(call) },
            Directives.spec(prefix + "_cache", .httpAll, .one) { call in
                let name = call.words[1]
                let choice: CacheZoneChoice? = name == "off" ? nil
                    : name.contains("$") ? .variable(try RewriteDirectives.template(call, name)) : .named(name)
                try Directives.setOnce(call, k(\.$zone), choice)
                Directives.withSettings(call) { $0[keyPath: c].zoneLocation = call.location }
            },
            Directives.spec(prefix + "_cache_key", .httpAll, .one) { call in
                try Directives.setOnce(call, k(\.$key), try RewriteDirectives.template(call, call.words[1]))
            },
            Directives.spec(prefix + "_cache_valid", .httpAll, .oneOrMore) { call in
                guard let seconds = Values.seconds(call.words.last!) else {
                    throw call.error("invalid time value \"\(call.words.last!)\"")
                }
                var codes: [Int] = []
                let words = call.args.dropLast()
                if words.isEmpty { codes = [200, 301, 302] }
                for w in words where w != "any" {
                    guard let n = Values.plainNumber(w), n >= 100, n <= 599 else { throw call.error("invalid status \"\(w)\"") }
                    codes.append(n)
                }
                if words.contains("any") { codes = [] }
                Directives.withSettings(call) { s in
                    let list = s[keyPath: k(\.$valid)].isSet ? s[keyPath: k(\.$valid)].wrappedValue : []
                    s[keyPath: k(\.$valid)].wrappedValue = list + [CacheValidity(codes: codes, seconds: seconds)]
                }
            },
            predicates(prefix + "_cache_bypass", k(\.$bypass)),
            predicates(prefix + "_no_cache", k(\.$noCache)),
            Directives.spec(prefix + "_cache_methods", .httpAll, .oneOrMore) { call in
                let known = ["GET", "HEAD", "POST", "PUT", "DELETE", "MKCOL", "COPY", "MOVE", "OPTIONS", "PROPFIND",
                             "PROPPATCH", "LOCK", "UNLOCK", "PATCH"]
                for m in call.args where !known.contains(m) { throw call.error("invalid value \"\(m)\"") }
                Directives.addTo(call, k(\.$methods), ["GET", "HEAD"] + call.args)
            },
            Directives.spec(prefix + "_cache_min_uses", .httpAll, .one) { call in
                guard let n = Values.plainNumber(call.words[1]) else { throw call.directiveError("invalid number") }
                try Directives.setOnce(call, k(\.$minUses), n)
            },
            Directives.spec(prefix + "_cache_use_stale", .httpAll, .oneOrMore) { call in
                try Directives.setOnce(call, k(\.$useStale), try UpstreamFamily.failures(call, NextUpstream.staleNames))
            },
            Directives.spec(prefix + "_cache_max_range_offset", .httpAll, .one) { call in
                guard let n = Values.plainNumber(call.words[1]) else { throw call.directiveError("invalid value") }
                try Directives.setOnce(call, k(\.$maxRangeOffset), n)
            },
            Directives.flagSetting(prefix + "_cache_lock", k(\.$lock)),
            Directives.msecSetting(prefix + "_cache_lock_timeout", k(\.$lockTimeout)),
            Directives.msecSetting(prefix + "_cache_lock_age", k(\.$lockAge)),
            Directives.flagSetting(prefix + "_cache_revalidate", k(\.$revalidate)),
            Directives.flagSetting(prefix + "_cache_background_update", k(\.$backgroundUpdate)),
        ]
        if prefix == "proxy" { specs.append(Directives.flagSetting("proxy_cache_convert_head", k(\.$convertHead))) }
        return specs
    }

    /// `*_cache_bypass` and `*_no_cache`: each directive at a level adds its values.
    private static func predicates(_ name: String, _ kp: WritableKeyPath<HTTPSettings, Setting<[Template]>>) -> DirectiveSpec {
        Directives.spec(name, .httpAll, .oneOrMore) { call in
            let templates = call.args.map { RewriteDirectives.lenientTemplate(call, $0) }
            Directives.withSettings(call) { s in
                let list = s[keyPath: kp].isSet ? s[keyPath: kp].wrappedValue : []
                s[keyPath: kp].wrappedValue = list + templates
            }
        }
    }

    /// `*_cache_path path [levels=1:2] [use_temp_path=on|off] keys_zone=name:size [inactive=time]
    /// [max_size=size] [min_free=size] [manager_files=n] [manager_sleep=time] [loader_files=n] [loader_sleep=time] …`.
    private static func declare(_ call: Call) throws {
        let http = Directives.http(call)
        var spec = CacheZoneSpec(path: call.configuration.fullPath(call.words[1]), location: call.location)
        var name = "", size = 0
        func number(_ p: String, _ what: String) throws -> Int {
            guard let n = Values.plainNumber(p.split(separator: "=", maxSplits: 1).last!), n > 0 else { throw call.error("invalid \(what) value \"\(p)\"") }
            return n
        }
        func msec(_ p: String, _ what: String) throws -> Int {
            guard let n = Values.msec(String(p.split(separator: "=", maxSplits: 1).last!)) else { throw call.error("invalid \(what) value \"\(p)\"") }
            return n
        }
        for p in call.words.dropFirst(2) {
            let value = p.firstIndex(of: "=").map { String(p[p.index(after: $0)...]) } ?? ""
            if p.hasPrefix("levels=") {
                let parts = value.split(separator: ":", omittingEmptySubsequences: false)
                guard (1...3).contains(parts.count), parts.allSatisfy({ $0 == "1" || $0 == "2" }) else {
                    throw call.error("invalid \"levels\" \"\(p)\"")
                }
                spec.levels = parts.map { Int($0)! }
            } else if p.hasPrefix("use_temp_path=") {
                // Vigil writes a response's temporary file beside the cache's files either way, so that
                // renaming it into place never copies.
                guard value == "on" || value == "off" else {
                    throw call.error("invalid use_temp_path value \"\(p)\", it must be \"on\" or \"off\"")
                }
            } else if p.hasPrefix("keys_zone=") {
                guard let colon = value.firstIndex(of: ":") else { throw call.error("invalid keys zone size \"\(p)\"") }
                guard let n = Values.size(String(value[value.index(after: colon)...])) else { throw call.error("invalid keys zone size \"\(p)\"") }
                guard n >= 2 * 4096 else { throw call.error("keys zone \"\(p)\" is too small") }
                name = String(value[..<colon])
                size = n
            } else if p.hasPrefix("inactive=") {
                guard let s = Values.seconds(value) else { throw call.error("invalid inactive value \"\(p)\"") }
                spec.inactive = s
            } else if p.hasPrefix("max_size=") {
                guard let n = Values.size(value) else { throw call.error("invalid max_size value \"\(p)\"") }
                spec.maxSize = n
            } else if p.hasPrefix("min_free=") {
                guard let n = Values.size(value) else { throw call.error("invalid min_free value \"\(p)\"") }
                spec.minFree = n
            } else if p.hasPrefix("manager_files=") {
                spec.managerFiles = try number(p, "manager_files")
            } else if p.hasPrefix("manager_sleep=") {
                spec.managerSleepMs = try msec(p, "manager_sleep")
            } else if p.hasPrefix("loader_files=") {
                spec.loaderFiles = try number(p, "loader_files")
            } else if p.hasPrefix("loader_sleep=") {
                spec.loaderSleepMs = try msec(p, "loader_sleep")
            } else if p.hasPrefix("manager_threshold=") || p.hasPrefix("loader_threshold=") {
                // Their passes are bounded by files (manager_files, loader_files) and take far less.
                _ = try msec(p, String(p.prefix { $0 != "=" }))
            } else {
                throw call.invalidParameter(p)
            }
        }
        guard !name.isEmpty, size != 0 else { throw call.error("\"\(call.name)\" must have \"keys_zone\" parameter") }
        if http.cacheZones.contains(where: { $0.name == name }) { throw call.error("duplicate zone \"\(name)\"") }
        if let other = http.cacheZones.first(where: { $0.path == spec.path }) {
            throw call.error("the same path name \"\(spec.path)\" used in \(other.location) and in \(call.location)")
        }
        try http.addSharedZone(call, name: name, size: size, use: .cache)
        spec.name = name
        spec.size = size
        http.cacheZones.append(spec)
    }
}
