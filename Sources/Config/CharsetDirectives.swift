/// nginx's charset module: `charset` labels responses; recoding (source_charset, charset_map) is not done.
enum CharsetDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("charset", [.httpAll, .locationIf], .one) { call in
            let v = call.words[1]
            if v.hasPrefix("$") { throw call.error("\"charset\" with variables is not supported by vigil") }
            try Directives.setOnce(call, \.charset.$name, v == "off" ? nil : v)
        },
    ]
}
