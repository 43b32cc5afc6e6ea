import Core

/// A parsed request line and header block. The request line's parts are Strings (every request reads
/// them); the header lines stay as the bytes that came, with where each field's name and value lie in
/// them, so that passing them on (proxying) copies bytes and a header becomes a String only when something
/// asks for it by name.
public struct RequestHead: Sendable {
    public var method: String
    /// As sent ("/a/../b%41?x=1#f"); nginx's $request_uri, and what goes upstream while no script changed the URI.
    public var target: String
    /// The path nginx routes by and calls $uri: decoded and resolved ("/bA").
    public var path: String
    /// After "?", without it, up to a "#".
    public var query: String?
    /// The path came with %-escapes: a path sent upstream after a change of location prefix is escaped again.
    public var pathWasEscaped: Bool
    public var versionMajor: Int
    public var versionMinor: Int
    /// The header block's bytes and each field's place in them, in arrival order.
    public let block: [UInt8]
    public let fields: [HeaderField]

    // Derived while parsing.
    public var host: String?
    public var contentLength: Int?
    public var chunked: Bool
    /// `Expect: 100-continue` in an HTTP/1.1 request.
    public var expectContinue: Bool
    /// Connection persistence after this request, per the version and `Connection:` header.
    public var keepAlive: Bool

    public init(method: String, target: String, path: String, query: String?, pathWasEscaped: Bool = false, versionMajor: Int, versionMinor: Int,
                block: [UInt8] = [], fields: [HeaderField] = [], host: String?, contentLength: Int?, keepAlive: Bool,
                chunked: Bool = false, expectContinue: Bool = false) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.pathWasEscaped = pathWasEscaped
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

    /// Every value of header `name`, joined by `separator` (as nginx 1.23+ gives `$http_*`); nil when there is none.
    public static func joinedValues(of name: String, in bytes: UnsafeRawBufferPointer, _ fields: [HeaderField], separator: String) -> String? {
        var joined: String?
        for f in fields where RequestParser.equalsIgnoringASCIICase(UnsafeRawBufferPointer(rebasing: bytes[f.name]), name) {
            let v = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[f.value]), as: UTF8.self)
            joined = joined.map { $0 + separator + v } ?? v
        }
        return joined
    }

    /// The same values as `joinedValues`, appended to `out` as bytes; false when there is none.
    public static func appendJoinedValues(of name: String, in bytes: UnsafeRawBufferPointer, _ fields: [HeaderField], separator: String, to out: OutputQueue) -> Bool {
        var found = false
        for f in fields where RequestParser.equalsIgnoringASCIICase(UnsafeRawBufferPointer(rebasing: bytes[f.name]), name) {
            if found { out.append(separator) }
            out.append(UnsafeRawBufferPointer(rebasing: bytes[f.value]))
            found = true
        }
        return found
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

/// How a head is read: nginx's limits on its size, and the server's rules for header names and paths.
public struct RequestRules: Sendable {
    /// `large_client_header_buffers` size: the longest request line (414 past it) and header line.
    public var maxLineLength: Int
    /// Total bytes for the whole head (`large_client_header_buffers` count × size).
    public var maxHeadLength: Int
    /// `merge_slashes`: "//" in a path counts as "/" for routing.
    public var mergeSlashes: Bool
    /// `ignore_invalid_headers`: a header whose name nginx deems invalid is dropped, not passed on.
    public var ignoreInvalidHeaders: Bool
    /// `underscores_in_headers`: "_" is valid in a header name.
    public var underscoresInHeaders: Bool

    public init(maxLineLength: Int = 8192, maxHeadLength: Int = 32768, mergeSlashes: Bool = true,
                ignoreInvalidHeaders: Bool = true, underscoresInHeaders: Bool = false) {
        self.maxLineLength = maxLineLength
        self.maxHeadLength = maxHeadLength
        self.mergeSlashes = mergeSlashes
        self.ignoreInvalidHeaders = ignoreInvalidHeaders
        self.underscoresInHeaders = underscoresInHeaders
    }
}
