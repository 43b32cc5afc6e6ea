import HTTP

/// nginx's built-in pages for error and redirect statuses, byte for byte (with Vigil's name in the footer).
public enum ErrorPages {
    /// The body nginx sends for an error status.
    public static func page(_ code: Int, serverTokens: String) -> String? {
        let title: String
        switch code {
        // nginx's pages differ from its status lines in a few places (its 302 page says "Found").
        case 302: title = "302 Found"
        case 401: title = "401 Authorization Required"
        case 494: title = "400 Request Header Or Cookie Too Large"
        case 495: title = "400 The SSL certificate error"
        case 496: title = "400 No required SSL certificate was sent"
        case 497: title = "400 The plain HTTP request was sent to HTTPS port"
        case 301, 303, 307, 308, 400...599:
            guard !Status.reason(code).isEmpty else { return nil }
            title = "\(code) \(Status.reason(code))"
        default: return nil
        }
        // nginx's 494 to 497 pages are 400s with a second line saying why.
        let heading = (494...497).contains(code) ? "<center><h1>400 Bad Request</h1></center>\r\n<center>\(title.dropFirst(4))</center>"
                                                 : "<center><h1>\(title)</h1></center>"
        return "<html>\r\n<head><title>\(title)</title></head>\r\n<body>\r\n\(heading)\r\n<hr><center>\(serverTokens)</center>\r\n</body>\r\n</html>\r\n"
    }

    /// Statuses that end the connection whether or not an error page answers them, as in nginx.
    static func closesConnection(_ status: Int) -> Bool {
        switch status {
        case 400, 408, 413, 414, 494...497, 500, 501, 505: return true
        default: return false
        }
    }
}
