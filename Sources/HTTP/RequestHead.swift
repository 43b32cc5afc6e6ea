/// A parsed request line and header block. Values are kept as bytes-derived Strings only where the
/// request path needs them; everything else stays in `headers` in arrival order.
public struct RequestHead: Sendable {
    public var method: String
    public var target: String          // as sent: "/a/b?x=1"
    public var path: String            // target before "?"
    public var query: String?          // after "?", without it
    public var versionMajor: Int
    public var versionMinor: Int
    public var headers: [(name: String, value: String)]

    // Derived while parsing.
    public var host: String?
    public var contentLength: Int?
    public var chunked = false
    public var expectContinue = false
    /// Connection persistence after this request, per the version and `Connection:` header.
    public var keepAlive: Bool

    public init(method: String, target: String, path: String, query: String?, versionMajor: Int, versionMinor: Int,
                headers: [(name: String, value: String)], host: String?, contentLength: Int?, keepAlive: Bool) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
        self.headers = headers
        self.host = host
        self.contentLength = contentLength
        self.keepAlive = keepAlive
    }

    public var isHTTP11: Bool { versionMajor == 1 && versionMinor >= 1 }
    public var hasBody: Bool { chunked || (contentLength ?? 0) > 0 }

    /// `GET /x HTTP/1.1` as nginx's `$request` prints it.
    public var requestLine: String { "\(method) \(target) HTTP/\(versionMajor).\(versionMinor)" }

    /// The first value of header `name`, matched without regard to the case of ASCII letters, as field
    /// names are; compared in place, nothing is lowercased per call.
    public func header(_ name: String) -> String? {
        headers.first { RequestParser.equalsIgnoringASCIICase($0.name, name) }?.value
    }
}

/// What the parser concluded about the bytes so far.
public enum ParseResult: Sendable {
    case incomplete
    case complete(RequestHead, consumed: Int)
    /// nginx's answer: the status code and a short reason for the error log.
    case failure(status: Int, reason: String)
}

public struct RequestLimits: Sendable {
    /// `client_header_buffer_size` + `large_client_header_buffers`: the longest request line and header line.
    public var maxLineLength: Int
    /// Total bytes for the whole head (`large_client_header_buffers` count × size).
    public var maxHeadLength: Int
    public init(maxLineLength: Int = 8192, maxHeadLength: Int = 32768) {
        self.maxLineLength = maxLineLength
        self.maxHeadLength = maxHeadLength
    }
}
