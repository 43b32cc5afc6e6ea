/// The raw requests `DifferentialTests` sends to Vigil and to Debian's nginx. Each is written as a raw string
/// with C-style escapes (`\r`, `\n`, `\t`, `\\`, `\xHH`), so that control bytes and bytes that are not UTF-8
/// can be written down exactly. `/p/` is proxied to a URI part (`proxy_pass http://backend/q/`), every other
/// path as it came. Requests are sent whole, in one write, to the server with nginx's defaults or, for
/// `lenient` cases, to the one with `underscores_in_headers on`, `ignore_invalid_headers off` and
/// `merge_slashes off`.
struct DifferentialCase {
    let name: String
    let bytes: [UInt8]
    var lenient = false

    init(_ name: String, _ escapedText: String) {
        self.name = name
        bytes = DifferentialCase.unescape(escapedText)
    }

    init(_ name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }

    static func unescape(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            guard c == UInt8(ascii: "\\"), let e = it.popFirst() else { out.append(c); continue }
            switch e {
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "x"):
                out.append(UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16)!)
                it = it.dropFirst(2)
            default: out.append(e)
            }
        }
        return out
    }
}

extension DifferentialCase {
    /// `GET target HTTP/1.1` with Host and `extra` header lines (each ending in \r\n).
    static func get(_ name: String, _ target: String, _ extra: String = "") -> DifferentialCase {
        DifferentialCase(name, "GET \(target) HTTP/1.1\\r\\nHost: a\\r\\n\(extra)\\r\\n")
    }

    /// A POST with Host, `framing` header lines and `body` (escaped like the rest).
    static func post(_ name: String, _ framing: String, _ body: String, version: String = "1.1") -> DifferentialCase {
        DifferentialCase(name, "POST /post HTTP/\(version)\\r\\nHost: a\\r\\n\(framing)\\r\\n\(body)")
    }

    /// A chunked POST whose body is `body`.
    static func chunked(_ name: String, _ body: String) -> DifferentialCase {
        post(name, #"Transfer-Encoding: chunked\r\n"#, body)
    }

    static let all: [DifferentialCase] = baseline + methods + requestLines + versions + targets + proxiedURIs + headerLines
        + hosts + contentLengths + transferEncodings + chunkedBodies + expectAndConnection + duplicates + pipelines
        + lenientServer.map { var c = $0; c.lenient = true; return c }

    static let baseline: [DifferentialCase] = [
        get("get", "/"),
        DifferentialCase("get-http10", #"GET /x HTTP/1.0\r\n\r\n"#),
        DifferentialCase("get-http10-keepalive", #"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"#),
        DifferentialCase("head", #"HEAD /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"#),
        get("query", "/a?b=1&c=2"),
        post("post-length", #"Content-Length: 5\r\n"#, "hello"),
        post("post-length-zero", #"Content-Length: 0\r\n"#, ""),
        get("get-length-zero", "/", #"Content-Length: 0\r\n"#),
        get("get-with-body", "/", #"Content-Length: 5\r\n"#).appending("hello"),
        chunked("post-chunked", #"5\r\nhello\r\n0\r\n\r\n"#),
        get("many-headers", "/", String(repeating: #"X-Many: value\r\n"#, count: 60)),
        DifferentialCase("leading-crlf", #"\r\n\r\nGET /crlf HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("leading-lf", #"\nGET /lf HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("only-crlf", #"\r\n"#),
    ]

    static let methods: [DifferentialCase] = [
        DifferentialCase("method-lowercase", #"get / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-mixed-case", #"Get / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-digit", #"G3T / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-dot", #"X.Y / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-bang", #"GET! / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-underscore", #"MY_METHOD / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-dash", #"M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-long", "\(String(repeating: "X", count: 200)) / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"),
        DifferentialCase("method-non-ascii", #"G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-tab", #"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-leading-space", #" GET / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-trace", #"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-connect", #"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-connect-authority", #"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-options", #"OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-options-asterisk", #"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-delete", #"DELETE /d HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("method-propfind", #"PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n"#),
    ]

    static let requestLines: [DifferentialCase] = [
        DifferentialCase("http09-get", #"GET /nine\r\n"#),
        DifferentialCase("http09-get-lf", #"GET /nine\n"#),
        DifferentialCase("http09-post", #"POST /nine\r\n"#),
        DifferentialCase("two-spaces-before-target", #"GET  /two HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("two-spaces-after-target", #"GET /two  HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("space-after-version", #"GET /sp HTTP/1.1 \r\nHost: a\r\n\r\n"#),
        DifferentialCase("tab-after-target", #"GET /tab\tHTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("bare-cr-ends-request-line", #"GET / HTTP/1.1\rHost: a\r\n\r\n"#),
        DifferentialCase("cr-cr-lf-request-line", #"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"#),
        DifferentialCase("nul-after-version", #"GET / HTTP/1.1\x00\r\nHost: a\r\n\r\n"#),
        DifferentialCase("bare-lf-everywhere", #"GET /lf HTTP/1.1\nHost: a\nX: y\n\n"#),
        DifferentialCase("mixed-line-ends", #"GET /mixed HTTP/1.1\r\nHost: a\n\r\n"#),
        DifferentialCase("long-target", "GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"),
        DifferentialCase("long-target-fits", "GET /\(String(repeating: "a", count: 8000)) HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"),
    ]

    static let versions: [DifferentialCase] = [
        DifferentialCase("version-2.0", #"GET / HTTP/2.0\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-2", #"GET / HTTP/2\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-3.0", #"GET / HTTP/3.0\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-10.0", #"GET / HTTP/10.0\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-1.2", #"GET / HTTP/1.2\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-1.10", #"GET / HTTP/1.10\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-1.999", #"GET / HTTP/1.999\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-1.1000", #"GET / HTTP/1.1000\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-0.9", #"GET / HTTP/0.9\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-01.1", #"GET / HTTP/01.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-1.", #"GET / HTTP/1.\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-1", #"GET / HTTP/1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-lowercase", #"GET / http/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-trailing-garbage", #"GET / HTTP/1.1x\r\nHost: a\r\n\r\n"#),
        DifferentialCase("version-1.0-with-host", #"GET /v HTTP/1.0\r\nHost: a\r\n\r\n"#),
    ]

    static let targets: [DifferentialCase] = [
        get("dotdot-above-root", "/../x"),
        get("dotdot-above-root-deep", "/a/../../x"),
        get("dotdot-inside", "/a/../b"),
        get("dotdot-trailing", "/a/b/.."),
        get("dotdot-encoded", "/%2e%2e/x"),
        get("dotdot-encoded-upper", "/a/%2E%2E/%2E%2E/x"),
        get("dotdot-half-encoded", "/a/.%2e/b"),
        get("dot-segment", "/./a/./b"),
        get("dot-trailing", "/a/."),
        get("triple-dot", "/a/.../b"),
        get("double-slash", "//a//b"),
        get("encoded-slash", "/a%2fb"),
        get("encoded-slash-dotdot", "/a%2f..%2fb"),
        get("pct-nul", "/a%00b"),
        get("pct-malformed", "/a%zzb"),
        get("pct-truncated", "/a%4"),
        get("pct-bare", "/a%"),
        get("pct-in-query-malformed", "/a?%zz"),
        get("pct-nul-in-query", "/a?x=%00"),
        get("pct-letters", "/%41%62c"),
        get("pct-percent", "/100%25"),
        get("pct-hash", "/a%23b"),
        get("pct-question", "/a%3fb"),
        get("fragment", "/a#frag"),
        get("fragment-dotdot", "/a/..#x"),
        get("fragment-in-query", "/a?x=1#frag"),
        get("query-with-dotdot", "/a?../../etc/passwd"),
        get("dotdot-then-query", "/a/..?x=1"),
        get("dotdot-above-root-then-query", "/..?x=1"),
        get("pct-space", "/a%20b"),
        get("raw-utf8", #"/caf\xc3\xa9"#),
        get("raw-latin1", #"/caf\xe9"#),
        get("pct-latin1", "/caf%e9"),
        get("pct-overlong-dot", "/%c0%ae%c0%ae/x"),
        get("backslash", #"/a\\..\\b"#),
        get("pct-backslash", "/a%5c..%5cb"),
        get("plus", "/a+b"),
        get("tilde-and-friends", "/~user/a;b=c,d!$&'()*"),
        get("ctl-in-target", #"/a\x01b"#),
        get("del-in-target", #"/a\x7fb"#),
        get("nul-in-target", #"/a\x00b"#),
        get("tab-in-target", #"/a\tb"#),
        DifferentialCase("space-in-target", #"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"#),
        get("absolute-form", "http://other/x"),
        get("absolute-form-no-path", "http://other"),
        get("absolute-form-query-only", "http://other?x=1"),
        get("absolute-form-https", "https://other/x"),
        get("absolute-form-other-scheme", "ftp://other/x"),
        get("absolute-form-upper-scheme", "HTTP://Other/x"),
        get("absolute-form-port", "http://other:8080/x"),
        get("absolute-form-bad-port", "http://other:80a/x"),
        get("absolute-form-userinfo", "http://user@other/x"),
        get("absolute-form-ipv6", "http://[::1]:80/x"),
        get("absolute-form-double-dot-host", "http://a..b/x"),
        get("absolute-form-empty-host", "http:///x"),
        get("absolute-form-underscore-host", "http://a_b/x"),
        get("absolute-form-dotdot-path", "http://other/../x"),
        DifferentialCase("absolute-form-without-host-header", #"GET http://other/x HTTP/1.1\r\n\r\n"#),
        get("asterisk", "*"),
        get("relative-path", "a/b"),
        get("authority-form", "example.com:80"),
    ]

    /// `location /p/ { proxy_pass http://backend/q/; }`: the decoded, normalised URI goes, its escapes made again.
    static let proxiedURIs: [DifferentialCase] = [
        get("uri-part", "/p/x"),
        get("uri-part-query", "/p/x?a=%20&b"),
        get("uri-part-space", "/p/a%20b"),
        get("uri-part-encoded-slash", "/p/a%2fb"),
        get("uri-part-dotdot", "/p/a/../b"),
        get("uri-part-dotdot-out", "/p/../x"),
        get("uri-part-double-slash", "//p//x"),
        get("uri-part-letters", "/p/%41"),
        get("uri-part-utf8", #"/p/\xc3\xa9"#),
        get("uri-part-pct-utf8", "/p/%c3%a9"),
        get("uri-part-question", "/p/a%3fb"),
        get("uri-part-percent", "/p/100%25"),
        get("uri-part-hash", "/p/x#y"),
        get("uri-part-plus", "/p/a+b"),
        get("uri-part-specials", "/p/%22%3c%3e%5c%5e%60%7b%7c%7d"),
    ]

    static let headerLines: [DifferentialCase] = [
        get("underscore-name", "/", #"X_Foo: 1\r\n"#),
        get("dot-name", "/", #"X.Foo: 1\r\n"#),
        get("at-name", "/", #"X@Foo: 1\r\n"#),
        get("non-ascii-name", "/", #"X\xc3\xa9: 1\r\n"#),
        get("space-before-colon", "/", #"X-Foo : 1\r\n"#),
        get("tab-before-colon", "/", #"X-Foo\t: 1\r\n"#),
        get("empty-name", "/", #": x\r\n"#),
        get("no-colon", "/", #"X-Foo\r\n"#),
        get("empty-value", "/", #"X-Empty:\r\n"#),
        get("obs-fold", "/", #"X-Foo: a\r\n b\r\n"#),
        get("obs-fold-tab", "/", #"X-Foo: a\r\n\tb\r\n"#),
        DifferentialCase("obs-fold-first-line", #"GET / HTTP/1.1\r\n Host: a\r\n\r\n"#),
        get("nul-in-value", "/", #"X-Foo: a\x00b\r\n"#),
        get("ctl-in-value", "/", #"X-Foo: a\x01b\r\n"#),
        get("del-in-value", "/", #"X-Foo: a\x7fb\r\n"#),
        get("bare-cr-in-value", "/", #"X-Foo: a\rb\r\n"#),
        get("cr-cr-lf", "/", #"X-Foo: a\r\r\n"#),
        get("leading-tab-value", "/", #"X-Foo:\tv\r\n"#),
        get("trailing-tab-value", "/", #"X-Foo: v\t\r\n"#),
        get("spaces-around-value", "/", #"X-Foo:   v w   \r\n"#),
        get("utf8-value", "/", #"X-Foo: caf\xc3\xa9\r\n"#),
        get("latin1-value", "/", #"X-Foo: caf\xe9\r\n"#),
        get("long-header-line", "/", "X-Long: \(String(repeating: "b", count: 9000))\\r\\n"),
        get("long-headers-fit", "/", String(repeating: "X-Long: \(String(repeating: "b", count: 7000))\\r\\n", count: 3)),
        get("long-headers-too-many", "/", String(repeating: "X-Long: \(String(repeating: "b", count: 7000))\\r\\n", count: 5)),
        DifferentialCase("cr-then-garbage-ends-head", #"GET / HTTP/1.1\r\nHost: a\r\n\rX"#),
    ]

    static let hosts: [DifferentialCase] = [
        DifferentialCase("host-missing", #"GET / HTTP/1.1\r\n\r\n"#),
        DifferentialCase("host-missing-http10", #"GET / HTTP/1.0\r\n\r\n"#),
        DifferentialCase("host-duplicate", #"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"#),
        DifferentialCase("host-duplicate-http10", #"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"#),
        DifferentialCase("host-empty", #"GET / HTTP/1.1\r\nHost:\r\n\r\n"#),
        DifferentialCase("host-slash", #"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"#),
        DifferentialCase("host-double-dot", #"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n"#),
        DifferentialCase("host-leading-dot", #"GET / HTTP/1.1\r\nHost: .a\r\n\r\n"#),
        DifferentialCase("host-trailing-dot", #"GET / HTTP/1.1\r\nHost: a.\r\n\r\n"#),
        DifferentialCase("host-port", #"GET / HTTP/1.1\r\nHost: a:8080\r\n\r\n"#),
        DifferentialCase("host-port-only", #"GET / HTTP/1.1\r\nHost: :80\r\n\r\n"#),
        DifferentialCase("host-ipv6", #"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"#),
        DifferentialCase("host-inner-space", #"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"#),
        DifferentialCase("host-leading-tab", #"GET / HTTP/1.1\r\nHost:\ta\r\n\r\n"#),
        DifferentialCase("host-underscore", #"GET / HTTP/1.1\r\nHost: a_b\r\n\r\n"#),
        DifferentialCase("host-backslash", #"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n"#),
        DifferentialCase("host-utf8", #"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n"#),
        DifferentialCase("host-ctl", #"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n"#),
        DifferentialCase("host-invalid-with-absolute-form", #"GET http://other/x HTTP/1.1\r\nHost: a/b\r\n\r\n"#),
    ]

    static let contentLengths: [DifferentialCase] = [
        post("cl-duplicate-same", #"Content-Length: 5\r\nContent-Length: 5\r\n"#, "hello"),
        post("cl-duplicate-different", #"Content-Length: 5\r\nContent-Length: 6\r\n"#, "hello!"),
        post("cl-list", #"Content-Length: 5, 5\r\n"#, "hello"),
        post("cl-plus", #"Content-Length: +5\r\n"#, "hello"),
        post("cl-minus", #"Content-Length: -1\r\n"#, "hello"),
        post("cl-leading-spaces", #"Content-Length:   5\r\n"#, "hello"),
        post("cl-leading-tab", #"Content-Length:\t5\r\n"#, "hello"),
        post("cl-trailing-space", #"Content-Length: 5 \r\n"#, "hello"),
        post("cl-trailing-tab", #"Content-Length: 5\t\r\n"#, "hello"),
        post("cl-hex", #"Content-Length: 0x5\r\n"#, "hello"),
        post("cl-empty", #"Content-Length:\r\n"#, "hello"),
        post("cl-inner-space", #"Content-Length: 1 0\r\n"#, "hello"),
        post("cl-leading-zeros", #"Content-Length: 0005\r\n"#, "hello"),
        post("cl-overflow", #"Content-Length: 99999999999999999999\r\n"#, "hello"),
        post("cl-nineteen-digits", #"Content-Length: 1000000000000000000\r\n"#, "hello"),
        post("cl-above-max-body-size", #"Content-Length: 2000000\r\n"#, "hello"),
        post("cl-body-short", #"Content-Length: 10\r\n"#, "hello"),
        post("cl-body-long", #"Content-Length: 3\r\n"#, "hello"),
        post("cl-underscore", #"Content_Length: 5\r\n"#, "hello"),
        post("cl-http10", #"Content-Length: 5\r\n"#, "hello", version: "1.0"),
    ]

    static let transferEncodings: [DifferentialCase] = [
        post("te-upper", #"Transfer-Encoding: CHUNKED\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-lowercase-name", #"transfer-encoding: chunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-xchunked", #"Transfer-Encoding: xchunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-leading-space", #"Transfer-Encoding:  chunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-trailing-space", #"Transfer-Encoding: chunked \r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-leading-tab", #"Transfer-Encoding:\tchunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-trailing-tab", #"Transfer-Encoding: chunked\t\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-vertical-tab", #"Transfer-Encoding: chunked\x0b\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-chunked-identity", #"Transfer-Encoding: chunked, identity\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-identity-chunked", #"Transfer-Encoding: identity, chunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-gzip-chunked", #"Transfer-Encoding: gzip, chunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-identity", #"Transfer-Encoding: identity\r\n"#, "hello"),
        post("te-empty", #"Transfer-Encoding:\r\n"#, "hello"),
        post("te-quoted", #"Transfer-Encoding: "chunked"\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-kelvin-sign", #"Transfer-Encoding: chun\xe2\x84\xaaed\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-duplicate", #"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-space-before-colon", #"Transfer-Encoding : chunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-obs-fold", #"Transfer-Encoding:\r\n chunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#),
        post("te-underscore", #"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n"#, "hello"),
        post("te-http10", #"Transfer-Encoding: chunked\r\n"#, #"5\r\nhello\r\n0\r\n\r\n"#, version: "1.0"),
        post("te-http10-with-cl", #"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"#, "hello", version: "1.0"),
        post("cl-te", #"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"#, #"0\r\n\r\nX"#),
        post("te-cl", #"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n"#, #"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"#),
        post("cl-xchunked", #"Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n"#, "hello"),
        post("cl-te-identity", #"Content-Length: 5\r\nTransfer-Encoding: identity\r\n"#, "hello"),
        get("te-on-get", "/", #"Transfer-Encoding: chunked\r\n"#).appending(#"0\r\n\r\n"#),
    ]

    static let chunkedBodies: [DifferentialCase] = [
        chunked("chunk-hex-upper", #"A\r\n0123456789\r\n0\r\n\r\n"#),
        chunked("chunk-hex-lower", #"a\r\n0123456789\r\n0\r\n\r\n"#),
        chunked("chunk-two-chunks", #"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"#),
        chunked("chunk-leading-zeros", #"0005\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-many-leading-zeros", #"000000000000000000005\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-0x", #"0x5\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-leading-space", #" 5\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-trailing-space", #"5 \r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-plus", #"+5\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-minus", #"-5\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-underscore", #"5_0\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-empty-size", #"\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-extension", #"5;name=value\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-extension-quoted", #"5;name="a;b\r\nc"\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-extension-quoted-ok", #"5;name="a;b"\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-extension-ctl", #"5;\x01\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-extension-nul", #"5;\x00\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-last-extension", #"5\r\nhello\r\n0;x=y\r\n\r\n"#),
        chunked("chunk-size-overflow", #"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-size-sixteen-digits", #"ffffffffffffffff\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-size-above-max-body-size", #"ffffffff\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunks-above-max-body-size", "80000\\r\\n\(String(repeating: "a", count: 0x80000))\\r\\n80001\\r\\n"),
        chunked("chunk-data-missing-crlf", #"5\r\nhelloX0\r\n\r\n"#),
        chunked("chunk-data-too-long", #"3\r\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-bare-lf-after-size", #"5\nhello\r\n0\r\n\r\n"#),
        chunked("chunk-bare-lf-after-data", #"5\r\nhello\n0\r\n\r\n"#),
        chunked("chunk-bare-lf-last", #"5\r\nhello\r\n0\n\n"#),
        chunked("chunk-bare-cr-after-size", #"5\rhello\r\n0\r\n\r\n"#),
        chunked("chunk-trailer", #"5\r\nhello\r\n0\r\nX-Trailer: y\r\n\r\n"#),
        chunked("chunk-trailer-bare-lf", #"5\r\nhello\r\n0\r\nX-Trailer: y\n\r\n"#),
        chunked("chunk-incomplete", #"5\r\nhello\r\n"#),
        chunked("chunk-last-without-crlf", #"5\r\nhello\r\n0\r\n"#),
    ]

    static let expectAndConnection: [DifferentialCase] = [
        post("expect-100", #"Expect: 100-continue\r\nContent-Length: 5\r\n"#, "hello"),
        post("expect-100-uppercase", #"Expect: 100-CONTINUE\r\nContent-Length: 5\r\n"#, "hello"),
        post("expect-other", #"Expect: something\r\nContent-Length: 5\r\n"#, "hello"),
        post("expect-100-http10", #"Expect: 100-continue\r\nContent-Length: 5\r\n"#, "hello", version: "1.0"),
        get("expect-100-without-body", "/", #"Expect: 100-continue\r\n"#),
        get("upgrade-websocket", "/ws", #"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"#),
        get("upgrade-h2c", "/", #"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"#),
        get("connection-names-header", "/", #"Connection: X-Secret\r\nX-Secret: 1\r\n"#),
        get("connection-close", "/", #"Connection: close\r\n"#),
        get("keep-alive-header", "/", #"Keep-Alive: timeout=5\r\n"#),
        get("te-header", "/", #"TE: trailers\r\n"#),
        get("proxy-connection", "/", #"Proxy-Connection: keep-alive\r\n"#),
        DifferentialCase("h2-preface", #"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"#),
    ]

    /// nginx 1.22 allows one of each of these.
    static let duplicates: [DifferentialCase] = [
        get("duplicate-authorization", "/", #"Authorization: a\r\nAuthorization: b\r\n"#),
        get("duplicate-if-modified-since", "/", #"If-Modified-Since: a\r\nIf-Modified-Since: b\r\n"#),
        get("duplicate-if-unmodified-since", "/", #"If-Unmodified-Since: a\r\nIf-Unmodified-Since: b\r\n"#),
        get("duplicate-if-match", "/", #"If-Match: a\r\nIf-Match: b\r\n"#),
        get("duplicate-if-none-match", "/", #"If-None-Match: a\r\nIf-None-Match: b\r\n"#),
        get("duplicate-if-range", "/", #"If-Range: a\r\nIf-Range: b\r\n"#),
        get("duplicate-content-range", "/", #"Content-Range: a\r\nContent-Range: b\r\n"#),
        get("duplicate-expect", "/", #"Expect: a\r\nExpect: b\r\n"#),
        get("duplicate-user-agent", "/", #"User-Agent: a\r\nUser-Agent: b\r\n"#),
        get("duplicate-cookie", "/", #"Cookie: a=1\r\nCookie: b=2\r\n"#),
        get("duplicate-x-forwarded-for", "/", #"X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n"#),
    ]

    static let pipelines: [DifferentialCase] = [
        DifferentialCase("pipelined-gets", #"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("pipelined-post-then-get", #"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("pipelined-chunked-then-get", #"POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("pipelined-after-bad", #"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("smuggle-trailer-bare-lf", #"POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("smuggle-get-body", #"GET /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"#),
        DifferentialCase("smuggle-underscore-te", #"POST /1 HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"#),
    ]
}

extension DifferentialCase {
    /// For the server with the lenient header and path rules.
    static let lenientServer: [DifferentialCase] = [
        get("lenient-underscore-name", "/", #"X_Foo: 1\r\n"#),
        get("lenient-dot-name", "/", #"X.Foo: 1\r\n"#),
        get("lenient-at-name", "/", #"X@Foo: 1\r\n"#),
        get("lenient-non-ascii-name", "/", #"X\xc3\xa9: 1\r\n"#),
        post("lenient-content-length-underscore", #"Content_Length: 5\r\n"#, "hello"),
        post("lenient-transfer-encoding-underscore", #"Transfer_Encoding: chunked\r\n"#, #"0\r\n\r\n"#),
        get("lenient-double-slash", "//p//x"),
        get("lenient-double-slash-in-uri-part", "/p//x"),
        get("lenient-dotdot-double-slash", "/p/a/..//b"),
        get("lenient-encoded-slashes", "/p/%2f%2fx"),
    ]

    /// The same request with `escapedText` after it.
    func appending(_ escapedText: String) -> DifferentialCase {
        DifferentialCase(name, bytes: bytes + DifferentialCase.unescape(escapedText))
    }
}
