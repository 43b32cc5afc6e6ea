/// nginx's status lines and reason phrases.
public enum Status {
    public static func reason(_ code: Int) -> String {
        switch code {
        case 100: "Continue"; case 101: "Switching Protocols"
        case 200: "OK"; case 201: "Created"; case 202: "Accepted"; case 204: "No Content"; case 206: "Partial Content"
        case 301: "Moved Permanently"; case 302: "Moved Temporarily"; case 303: "See Other"; case 304: "Not Modified"
        case 307: "Temporary Redirect"; case 308: "Permanent Redirect"
        case 400: "Bad Request"; case 401: "Unauthorized"; case 402: "Payment Required"; case 403: "Forbidden"
        case 404: "Not Found"; case 405: "Not Allowed"; case 406: "Not Acceptable"; case 408: "Request Time-out"
        case 409: "Conflict"; case 410: "Gone"; case 411: "Length Required"; case 412: "Precondition Failed"
        case 413: "Request Entity Too Large"; case 414: "Request-URI Too Large"; case 415: "Unsupported Media Type"
        case 416: "Requested Range Not Satisfiable"; case 421: "Misdirected Request"; case 429: "Too Many Requests"
        case 494: "Request Header Or Cookie Too Large"
        case 500: "Internal Server Error"; case 501: "Not Implemented"; case 502: "Bad Gateway"
        case 503: "Service Temporarily Unavailable"; case 504: "Gateway Time-out"; case 505: "HTTP Version Not Supported"
        case 507: "Insufficient Storage"
        default: ""
        }
    }

    /// `HTTP/1.1 200 OK`, built once per code, not per response; a code without a phrase gets nginx's
    /// `HTTP/1.1 599 ` (the space stays: the status line's grammar requires it).
    public static func line(_ code: Int) -> String {
        code >= 0 && code < lines.count ? lines[code] : makeLine(code)
    }

    private static let lines: [String] = (0..<600).map(makeLine)

    private static func makeLine(_ code: Int) -> String {
        let r = reason(code)
        return "HTTP/1.1 \(code) \(r)"
    }
}
