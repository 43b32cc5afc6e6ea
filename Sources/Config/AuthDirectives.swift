/// nginx's auth_basic and auth_request modules, and the core module's `satisfy` and `auth_delay`.
enum AuthDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("auth_basic", [.httpAll, .limitExcept], .one) { call in
            try Directives.setOnce(call, \.auth.$basicRealm, try RewriteDirectives.template(call, call.words[1]))
        },
        Directives.spec("auth_basic_user_file", [.httpAll, .limitExcept], .one) { call in
            // As nginx's conf_prefix: a path without variables is made whole now; one with them, per request.
            let path = call.words[1].contains("$") ? call.words[1] : call.configuration.fullConfPath(call.words[1])
            try Directives.setOnce(call, \.auth.$basicUserFile, try RewriteDirectives.template(call, path))
        },
        Directives.spec("auth_request", .httpAll, .one) { call in
            try Directives.setOnce(call, \.auth.$request, call.words[1] == "off" ? nil : call.words[1])
        },
        Directives.spec("auth_request_set", .httpAll, .two) { call in
            let set = AuthRequestSet(variable: try RewriteDirectives.assignable(call, call.words[1]),
                                     value: try RewriteDirectives.template(call, call.words[2]))
            Directives.withSettings(call) { $0.auth.requestSets.append(set) }
        },
        Directives.spec("satisfy", .httpAll, .one) { call in
            guard call.words[1] == "all" || call.words[1] == "any" else { throw call.error("invalid value \"\(call.words[1])\"") }
            try Directives.setOnce(call, \.auth.$satisfyAny, call.words[1] == "any")
        },
        Directives.msecSetting("auth_delay", \.auth.$delay),
    ]
}
