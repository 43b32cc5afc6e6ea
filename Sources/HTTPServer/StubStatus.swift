import Config

import ShmTable

/// nginx's `stub_status`: the worker counters every worker adds to, summed.
enum StubStatus {
    static func serve(_ r: RequestContext) {
        guard r.method == "GET" || r.method == "HEAD" else { return r.service.pipeline.respondError(r, 405) }
        let c = r.service.counters
        let g = Gauges(c)
        let body = "Active connections: \(g.active) \nserver accepts handled requests\n \(c.value(.accepted)) \(c.value(.handled)) \(c.value(.requests)) \nReading: \(g.reading) Writing: \(g.writing) Waiting: \(g.waiting) \n"
        r.sink.respond(status: 200, contentType: "text/plain", body: Array(body.utf8))
    }

    /// The connection gauges as stub_status and `$connections_*` show them.
    struct Gauges {
        let active, reading, writing: Int64
        var waiting: Int64 { max(0, active - reading - writing) }
        init(_ c: SharedCounters) {
            active = c.value(.active)
            reading = max(0, c.value(.reading))
            writing = max(0, c.value(.writing))
        }
    }
}
