/// nginx's tuning directives that change nothing Vigil does (it reads static files whole, never spools a
/// response to a file, keeps no open-file cache): parsed as nginx parses them, so a bad value is still `-t`'s
/// error, then dropped. The README's "accepted without effect" table says why for each.
enum TuningDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("aio", [.httpAll], .one) { call in
            let v = call.words[1]
            guard ["on", "off", "threads"].contains(v) || v.hasPrefix("threads=") else { throw call.error("invalid value \"\(v)\"") }
        },
        Directives.spec("aio_write", .httpAll, .one) { call in _ = try Directives.flagArg(call) },
        Directives.spec("directio", .httpAll, .one) { call in try sizeOrOff(call) },
        Directives.spec("directio_alignment", .httpAll, .one) { call in _ = try Directives.sizeArg(call, call.words[1]) },
        Directives.spec("output_buffers", .httpAll, .two) { call in
            guard let n = Values.plainNumber(call.words[1]), n > 0 else { throw call.directiveError("invalid value") }
            _ = try Directives.sizeArg(call, call.words[2])
        },
        Directives.spec("sendfile_max_chunk", .httpAll, .one) { call in _ = try Directives.sizeArg(call, call.words[1]) },
        Directives.spec("postpone_output", .httpAll, .one) { call in _ = try Directives.sizeArg(call, call.words[1]) },
        Directives.spec("open_file_cache", .httpAll, .oneOrTwo) { call in
            if call.words[1] == "off" && call.words.count == 2 { return }
            var max = false
            for p in call.args {
                if p.hasPrefix("max="), let n = Values.plainNumber(p.dropFirst(4)), n > 0 { max = true; continue }
                if p.hasPrefix("inactive="), Values.msec(String(p.dropFirst(9))) != nil { continue }
                throw call.error("invalid \"open_file_cache\" parameter \"\(p)\"")
            }
            if !max { throw call.error("\"open_file_cache\" must have the \"max\" parameter") }
        },
        Directives.spec("open_file_cache_valid", .httpAll, .one) { call in _ = try Directives.msecArg(call, call.words[1]) },
        Directives.spec("open_file_cache_min_uses", .httpAll, .one) { call in
            guard Values.plainNumber(call.words[1]) != nil else { throw call.directiveError("invalid number") }
        },
        Directives.spec("open_file_cache_errors", .httpAll, .one) { call in _ = try Directives.flagArg(call) },
        Directives.spec("open_file_cache_events", .httpAll, .one) { call in _ = try Directives.flagArg(call) },
        Directives.spec("lingering_close", .httpAll, .one) { call in
            guard ["off", "on", "always"].contains(call.words[1]) else { throw call.error("invalid value \"\(call.words[1])\"") }
        },
        Directives.spec("lingering_time", .httpAll, .one) { call in _ = try Directives.msecArg(call, call.words[1]) },
        Directives.spec("lingering_timeout", .httpAll, .one) { call in _ = try Directives.msecArg(call, call.words[1]) },
        Directives.spec("msie_padding", .httpAll, .one) { call in _ = try Directives.flagArg(call) },
        Directives.spec("msie_refresh", .httpAll, .one) { call in _ = try Directives.flagArg(call) },
    ]

    private static func sizeOrOff(_ call: Call) throws {
        if call.words[1] != "off" { _ = try Directives.sizeArg(call, call.words[1]) }
    }
}
