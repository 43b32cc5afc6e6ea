import Config

/// nginx's `stub_status`: the worker counters every worker adds to, summed.
enum StubStatus {
    static func serve(_ r: RequestContext) {
        guard r.method == "GET" || r.method == "HEAD" else { return r.service.pipeline.respondError(r, 405) }
        let c = r.service.counters
        let active = c.value(.active), reading = max(0, c.value(.reading)), writing = max(0, c.value(.writing))
        let body = "Active connections: \(active) \nserver accepts handled requests\n \(c.value(.accepted)) \(c.value(.handled)) \(c.value(.requests)) \nReading: \(reading) Writing: \(writing) Waiting: \(max(0, active - reading - writing)) \n"
        r.sink.respond(status: 200, contentType: "text/plain", body: Array(body.utf8))
    }
}
