import Core

/// nginx's limit_req and limit_conn modules: zones at http level, limits at any level, each checked as nginx
/// checks it, in its words.
enum LimitDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("limit_req_zone", .http, Arity(min: 3, max: 3)) { call in try declareZone(call, .requests) },
        Directives.spec("limit_conn_zone", .http, .two) { call in try declareZone(call, .connections) },
        Directives.spec("limit_req", .httpAll, Arity(min: 1, max: 3)) { call in
            var zone: Int?, burst = 0, delay = 0
            for p in call.args {
                if p.hasPrefix("zone=") {
                    zone = try use(call, String(p.dropFirst(5)), .requests)
                } else if p.hasPrefix("burst=") {
                    guard let n = Values.plainNumber(p.dropFirst(6)), n > 0 else { throw call.error("invalid burst value \"\(p)\"") }
                    burst = n
                } else if p.hasPrefix("delay=") {
                    guard let n = Values.plainNumber(p.dropFirst(6)), n > 0 else { throw call.error("invalid delay value \"\(p)\"") }
                    delay = n
                } else if p == "nodelay" {
                    delay = Int.max / 1000   // nginx's: no excess reaches it
                } else {
                    throw call.invalidParameter(p)
                }
            }
            guard let zone else { throw call.error("\"limit_req\" must have \"zone\" parameter") }
            try append(call, \.limits.$requests, LimitReqRule(zone: zone, burst: burst * 1000, delay: delay * 1000)) { $0.zone == zone }
        },
        Directives.spec("limit_conn", .httpAll, .two) { call in
            let zone = try use(call, call.words[1], .connections)
            guard let n = Values.plainNumber(call.words[2]), n > 0 else {
                throw call.error("invalid number of connections \"\(call.words[2])\"")
            }
            guard n <= 65535 else { throw call.error("connection limit must be less 65536") }
            try append(call, \.limits.$connections, LimitConnRule(zone: zone, limit: n)) { $0.zone == zone }
        },
        Directives.spec("limit_req_status", .httpAll, .one) { call in try Directives.setOnce(call, \.limits.$requestStatus, try status(call)) },
        Directives.spec("limit_conn_status", .httpAll, .one) { call in try Directives.setOnce(call, \.limits.$connectionStatus, try status(call)) },
        Directives.spec("limit_req_log_level", .httpAll, .one) { call in try Directives.setOnce(call, \.limits.$requestLogLevel, try level(call)) },
        Directives.spec("limit_conn_log_level", .httpAll, .one) { call in try Directives.setOnce(call, \.limits.$connectionLogLevel, try level(call)) },
        Directives.flagSetting("limit_req_dry_run", \.limits.$requestDryRun),
        Directives.flagSetting("limit_conn_dry_run", \.limits.$connectionDryRun),
    ]

    /// `limit_req_zone key zone=name:size [rate=Nr/s|Nr/m]`, `limit_conn_zone key zone=name:size`.
    private static func declareZone(_ call: Call, _ kind: LimitZoneSpec.Kind) throws {
        var name: String?, size = 0, rate = 1000
        for p in call.words.dropFirst(2) {
            if p.hasPrefix("zone=") {
                let v = p.dropFirst(5)
                guard let colon = v.firstIndex(of: ":"), let n = Values.size(String(v[v.index(after: colon)...])) else {
                    throw call.error("invalid zone size \"\(p)\"")
                }
                // nginx's minimum: eight pages.
                guard n >= 8 * 4096 else { throw call.error("zone \"\(p)\" is too small") }
                name = String(v[..<colon])
                size = n
            } else if kind == .requests && p.hasPrefix("rate=") {
                var number = p.dropFirst(5), scale = 1
                if number.hasSuffix("r/s") { number = number.dropLast(3) } else if number.hasSuffix("r/m") { number = number.dropLast(3); scale = 60 }
                guard let n = Values.plainNumber(number), n > 0 else { throw call.error("invalid rate \"\(p)\"") }
                rate = n * 1000 / scale
            } else {
                // NGINX Plus's `sync` among them: open source nginx 1.22 refuses it so too.
                throw call.invalidParameter(p)
            }
        }
        guard let name else { throw call.error("\"\(call.name)\" must have \"zone\" parameter") }
        let http = Directives.http(call)
        let i = try zoneIndex(call, name, size: size, kind)
        if http.limitZones[i].key != nil {
            throw call.error("\(call.name) \"\(name)\" is already bound to key \"\(http.limitZones[i].keyText)\"")
        }
        let text = call.words[1]
        http.limitZones[i].key = text == "$binary_remote_addr" ? .binaryRemoteAddr : .template(try RewriteDirectives.template(call, text))
        http.limitZones[i].keyText = text
        http.limitZones[i].rate = rate
    }

    /// A zone a `limit_req` or `limit_conn` names, declared (by size 0) if no zone directive has yet.
    private static func use(_ call: Call, _ name: String, _ kind: LimitZoneSpec.Kind) throws -> Int {
        try zoneIndex(call, name, size: 0, kind)
    }

    private static func zoneIndex(_ call: Call, _ name: String, size: Int, _ kind: LimitZoneSpec.Kind) throws -> Int {
        let http = Directives.http(call)
        try http.addSharedZone(call, name: name, size: size, use: kind == .requests ? .limitReq : .limitConn)
        if let i = http.limitZones.firstIndex(where: { $0.name == name }) {
            if size != 0 { http.limitZones[i].size = size }
            return i
        }
        http.limitZones.append(LimitZoneSpec(name: name, kind: kind, size: size))
        return http.limitZones.count - 1
    }

    /// A level's `limit_req`s (or `limit_conn`s) add up; the same zone twice at one level is a duplicate.
    private static func append<T>(_ call: Call, _ kp: WritableKeyPath<HTTPSettings, Setting<[T]>>, _ rule: T,
                                  sameZone: (T) -> Bool) throws {
        try Directives.withSettings(call) { s in
            var list = s[keyPath: kp].isSet ? s[keyPath: kp].wrappedValue : []
            if list.contains(where: sameZone) { throw call.duplicate() }
            list.append(rule)
            s[keyPath: kp].wrappedValue = list
        }
    }

    private static func status(_ call: Call) throws -> Int {
        guard let n = Values.plainNumber(call.words[1]) else { throw call.directiveError("invalid number") }
        guard (400...599).contains(n) else { throw call.error("value must be between 400 and 599") }
        return n
    }

    private static func level(_ call: Call) throws -> LogLevel {
        guard let l = LogLevel(name: call.words[1]), [.info, .notice, .warn, .error].contains(l) else {
            throw call.error("invalid value \"\(call.words[1])\"")
        }
        return l
    }
}
