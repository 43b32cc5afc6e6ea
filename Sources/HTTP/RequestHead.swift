/// A parsed request line and header block. The request line's parts are Strings (every request reads
/// them); the header lines stay as the bytes that came, with where each field's name and value lie in
/// them, so that passing them on (proxying) copies bytes and a header becomes a String only when something
/// asks for it by name.
public struct RequestHead: Sendable {
    public var method: String
    public var target: String          // as sent: "/a/b?x=1"
    public var path: String            // target before "?"
    public var query: String?          // after "?", without it
    public var versionMajor: Int
    public var versionMinor: Int
    /// The header block's bytes and each field's place in them, in arrival order.
    public let block: [UInt8]
    public let fields: [HeaderField]

    // Derived while parsing.
    public var host: String?
    public var contentLength: Int?
    public var chunked: Bool
    public var expectContinue: Bool
    /// Connection persistence after this request, per the version and `Connection:` header.
    public var keepAlive: Bool

    public init(method: String, target: String, path: String, query: String?, versionMajor: Int, versionMinor: Int,
                block: [UInt8] = [], fields: [HeaderField] = [], host: String?, contentLength: Int?, keepAlive: Bool,
                chunked: Bool = false, expectContinue: Bool = false) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
        self.block = block
        self.fields = fields
        self.host = host
        self.contentLength = contentLength
        self.keepAlive = keepAlive
        self.chunked = chunked
        self.expectContinue = expectContinue
    }

    public var isHTTP11: Bool { versionMajor == 1 && versionMinor >= 1 }
    public var hasBody: Bool { chunked || (contentLength ?? 0) > 0 }

    /// `GET /x HTTP/1.1` as nginx's `$request` prints it.
    public var requestLine: String { "\(method) \(target) HTTP/\(versionMajor).\(versionMinor)" }

    /// The headers as strings, in arrival order.
    public var headers: [(name: String, value: String)] {
        withFields { bytes, fields in
            fields.map { (String(decoding: bytes[$0.name], as: UTF8.self), String(decoding: bytes[$0.value], as: UTF8.self)) }
        }
    }

    /// The header block's bytes with the fields' places in them.
    @inlinable public func withFields<R>(_ body: (UnsafeRawBufferPointer, [HeaderField]) -> R) -> R {
        block.withUnsafeBytes { body($0, fields) }
    }

    /// The first value of header `name` in a block's bytes; field names are matched without regard to the
    /// case of ASCII letters, and nothing is lowercased per call.
    @inlinable public static func value(of name: String, in bytes: UnsafeRawBufferPointer, _ fields: [HeaderField]) -> UnsafeRawBufferPointer? {
        for f in fields where RequestParser.equalsIgnoringASCIICase(UnsafeRawBufferPointer(rebasing: bytes[f.name]), name) {
            return UnsafeRawBufferPointer(rebasing: bytes[f.value])
        }
        return nil
    }

    /// The first value of header `name` as a String. (The request path reads a header through its request,
    /// which borrows the block: calling a method on a head stored in a class copies the whole head.)
    public func header(_ name: String) -> String? {
        withFields { bytes, fields in RequestHead.value(of: name, in: bytes, fields).map { String(decoding: $0, as: UTF8.self) } }
    }
}

/// Arrays a parse fills instead of allocating its own: a server passes back those of a finished request.
public struct HeadStorage {
    public var block: [UInt8]
    public var fields: [HeaderField]
    public init(block: [UInt8] = [], fields: [HeaderField] = []) {
        self.block = block
        self.fields = fields
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
