import Script

/// `map source $variable { key value; … }` (http level), with nginx's special keys `default`, `hostnames`,
/// `volatile` and `include`, `~`/`~*` regex keys, and `\` to take a special word as a plain key.
enum MapDirective {
    static let specs: [DirectiveSpec] = [
        Directives.spec("map", .http, .two, block: true) { call in
            let http = Directives.http(call)
            let name = call.words[2]
            guard name.hasPrefix("$"), name.count > 1 else { throw call.error("invalid variable name \"\(name)\"") }
            let bare = String(name.dropFirst())
            if Variable.isBuiltin(bare) { throw call.error("the duplicate \"\(bare)\" variable") }
            let index = http.variables.declare(bare)
            if http.variables.maps[index] != nil { throw call.error("the duplicate \"\(bare)\" variable") }
            let map = Map(source: try RewriteDirectives.template(call, call.words[1]))
            http.variables.define(index, by: map)
            try call.parseBlock(.map(map, http))
        },
        Directives.accepted("map_hash_max_size", .http, .one, HTTPCore.hashes),
        Directives.accepted("map_hash_bucket_size", .http, .one, HTTPCore.hashes),
    ]

    static func addEntry(_ call: Call, _ map: Map) throws {
        let words = call.words
        if words.count == 1 {
            switch words[0] {
            case "hostnames": map.hostnames = true; return
            case "volatile": map.volatile = true; return
            default: throw call.error("invalid number of the map parameters")
            }
        }
        guard words.count == 2 else { throw call.error("invalid number of the map parameters") }
        let value = try RewriteDirectives.template(call, words[1])
        var key = words[0]
        if key == "default" {
            if map.defaultValue != nil { throw call.error("duplicate default map parameter") }
            map.defaultValue = value
            return
        }
        if key.hasPrefix("~") {
            let caseless = key.hasPrefix("~*")
            map.add(regex: try RewriteDirectives.regex(call, String(key.dropFirst(caseless ? 2 : 1)), caseless: caseless), value: value)
            return
        }
        if key.hasPrefix("\\") { key.removeFirst() }
        do { try map.add(key: key, value: value) } catch { throw call.error("conflicting parameter \"\(words[0])\"") }
    }
}
