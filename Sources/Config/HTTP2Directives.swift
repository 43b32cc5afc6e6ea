/// nginx's HTTP/2 module directives, as 1.22 reads them, with 1.25's `http2 on|off`. Those 1.19.7 made obsolete
/// warn and point to their replacements as nginx's do; server push, gone from nginx 1.25.1, is ignored with
/// nginx's warning.
enum HTTP2Directives {
    static let specs: [DirectiveSpec] = [
        Directives.flagSetting("http2", \.http2.$enabled, [.http, .server]),
        // SETTINGS_MAX_CONCURRENT_STREAMS is 32 bits: a larger number means as many as it can say (the stream
        // count and the PRIORITY budget it raises stay far from overflowing).
        Directives.spec("http2_max_concurrent_streams", [.http, .server], .one) { call in
            guard let n = Values.plainNumber(call.words[1]) else { throw call.directiveError("invalid number") }
            try Directives.setOnce(call, \.http2.$maxConcurrentStreams, min(n, Int(UInt32.max)))
        },
        Directives.spec("http2_chunk_size", .httpAll, .one) { call in
            let n = try Directives.sizeArg(call, call.words[1])
            guard n > 0 else { throw call.error("the http2 chunk size cannot be zero") }
            try Directives.setOnce(call, \.http2.$chunkSize, min(n, 16_777_215))
        },
        Directives.spec("http2_body_preread_size", [.http, .server], .one) { call in
            let n = try Directives.sizeArg(call, call.words[1])
            guard n <= maxWindow else { throw call.error("the maximum body preread buffer size is \(maxWindow)") }
            try Directives.setOnce(call, \.http2.$bodyPrereadSize, n)
        },
        Directives.spec("http2_recv_buffer_size", .http, .one) { call in
            let n = try Directives.sizeArg(call, call.words[1])
            guard n > 2 * 16 else { throw call.error("the http2 receive buffer size should be > 32") }
            try Directives.setOnce(call, \.http2.$recvBufferSize, n)
        },
        obsolete("http2_recv_timeout", "client_header_timeout"),
        obsolete("http2_idle_timeout", "keepalive_timeout"),
        obsolete("http2_max_requests", "keepalive_requests"),
        obsolete("http2_max_field_size", "large_client_header_buffers"),
        obsolete("http2_max_header_size", "large_client_header_buffers"),
        Directives.spec("http2_pool_size", [.http, .server], .one) { call in _ = try Directives.sizeArg(call, call.words[1]) },
        Directives.spec("http2_streams_index_size", [.http, .server], .one) { call in
            guard let n = Values.plainNumber(call.words[1]), n > 0, n & (n - 1) == 0 else {
                throw call.error("the http2 streams index size must be a power of two")
            }
        },
        Directives.spec("http2_max_concurrent_pushes", [.http, .server], .one) { call in
            call.warn("the \"http2_max_concurrent_pushes\" directive is obsolete, ignored")
        },
        Directives.spec("http2_push", .httpAll, .one) { call in call.warn("the \"http2_push\" directive is obsolete, ignored") },
        Directives.spec("http2_push_preload", .httpAll, .one) { call in
            _ = try Directives.flagArg(call)
            call.warn("the \"http2_push_preload\" directive is obsolete, ignored")
        },
    ]

    /// nginx's NGX_HTTP_V2_MAX_WINDOW.
    static let maxWindow = (1 << 31) - 1

    private static func obsolete(_ name: String, _ replacement: String) -> DirectiveSpec {
        Directives.spec(name, [.http, .server], .one) { call in
            call.warn("the \"\(name)\" directive is obsolete, use the \"\(replacement)\" directive instead")
        }
    }
}
