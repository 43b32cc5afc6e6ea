/// nginx's autoindex module: directory listings for URIs ending in "/" that have no index file.
enum AutoIndexDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.flagSetting("autoindex", \.autoIndex.$on),
        Directives.spec("autoindex_format", .httpAll, .one) { call in
            guard let format = AutoIndexFormat(rawValue: call.words[1]) else { throw call.error("invalid value \"\(call.words[1])\"") }
            try Directives.setOnce(call, \.autoIndex.$format, format)
        },
        Directives.flagSetting("autoindex_localtime", \.autoIndex.$localTime),
        Directives.flagSetting("autoindex_exact_size", \.autoIndex.$exactSize),
    ]
}
