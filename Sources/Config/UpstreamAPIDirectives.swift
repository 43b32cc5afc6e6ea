/// NGINX Plus's upstream API and its persistence: `state FILE` in an `upstream` (its servers live in the file,
/// which the API changes; no `server` lines beside it) and `api [write=on|off]` in a location, which a
/// configuration must name for the API to answer there, and for it to change anything.
enum UpstreamAPIDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("state", .upstream, .one) { call in
            let upstream = UpstreamDirectives.upstream(call)
            guard upstream.stateFile == nil else { throw call.error("\"state\" directive is duplicate") }
            upstream.stateFile = call.configuration.fullPath(call.words[1])
        },
        Directives.spec("api", .location, .zeroOrOne) { call in
            var write = false
            if call.words.count == 2 {
                guard call.words[1] == "write=on" || call.words[1] == "write=off" else { throw call.invalidParameter(call.words[1]) }
                write = call.words[1] == "write=on"
            }
            try HTTPCore.setContent(call, .upstreamAPI(write: write))
        },
    ]
}
