import Script

/// nginx's geo and split_clients modules: variables computed from the client's address, or from a hash of a
/// string, declared by http-level blocks like `map`.
enum GeoDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("geo", .http, .oneOrTwo, block: true) { call in
            let http = Directives.http(call)
            let index = try declare(call, call.words.last!)
            let geo = Geo(source: call.words.count == 3 ? try RewriteDirectives.template(call, call.words[1]) : nil)
            http.variables.define(index, by: geo)
            try call.parseBlock(.geo(geo, http))
        },
        Directives.spec("split_clients", .http, .two, block: true) { call in
            let index = try declare(call, call.words[2])
            let split = SplitClients(source: try RewriteDirectives.template(call, call.words[1]))
            Directives.http(call).variables.define(index, by: split)
            try call.parseBlock(.splitClients(split))
        },
    ]

    /// The block's variable, which nothing else may define.
    private static func declare(_ call: Call, _ name: String) throws -> Int {
        guard name.hasPrefix("$"), name.count > 1 else { throw call.error("invalid variable name \"\(name)\"") }
        let bare = String(name.dropFirst())
        let variables = Directives.http(call).variables
        if Variable.isBuiltin(bare) || variables.index(of: bare).map({ variables.maps[$0] != nil }) == true {
            throw call.error("the duplicate \"\(bare)\" variable")
        }
        return variables.declare(bare)
    }

    /// A line of a `geo` block, as nginx reads it.
    static func addEntry(_ call: Call, _ geo: Geo) throws {
        let w = call.words
        if w.count == 1 {
            switch w[0] {
            case "ranges": geo.usesRanges = true
            case "proxy_recursive": geo.proxyRecursive = true
            default: throw call.error("invalid number of the geo parameters")
            }
            return
        }
        guard w.count == 2 else { throw call.error("invalid number of the geo parameters") }
        switch w[0] {
        case "default": geo.defaultValue = w[1]
        case "proxy":
            guard let n = HTTPCore.parseCIDR(w[1]), !n.bytes.isEmpty else { throw call.error("invalid network \"\(w[1])\"") }
            geo.addProxy(n)
        case "delete":
            if geo.usesRanges {
                guard let r = Geo.range(w[1]) else { throw call.error("invalid range \"\(w[1])\"") }
                if !geo.delete(range: r) { call.warn("no address range \"\(w[1])\" to delete") }
            } else {
                guard let n = Geo.network(w[1]) else { throw call.error("invalid network \"\(w[1])\"") }
                if !geo.delete(n) { call.warn("no network \"\(w[1])\" to delete") }
            }
        default:
            if geo.usesRanges {
                guard let r = Geo.range(w[0]) else { throw call.error("invalid range \"\(w[0])\"") }
                geo.add(range: r, value: w[1])
            } else {
                guard let n = Geo.network(w[0]) else { throw call.error("invalid network \"\(w[0])\"") }
                geo.add(n, value: w[1])
            }
        }
    }

    /// A line of a `split_clients` block.
    static func addPart(_ call: Call, _ split: SplitClients) throws {
        guard call.words.count == 2 else { throw call.error("invalid number of parameters") }
        do throws(SplitClients.AddError) {
            try split.add(call.words[0], value: call.words[1])
        } catch .invalidPercent {
            throw call.error("invalid percent value \"\(call.words[0])\"")
        } catch {
            throw call.error("percent total is greater than 100%")
        }
    }
}
