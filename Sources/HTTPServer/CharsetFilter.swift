import Config
import HTTP

/// nginx's charset filter as `charset` alone drives it (source_charset off, no recoding): a response whose
/// Content-Type is one of nginx's default charset_types and names no charset gets `; charset=NAME`, unless it
/// is a 301 or 302.
public enum CharsetFilter {
    static let types = ["text/html", "text/xml", "text/plain", "text/vnd.wap.wml", "application/javascript", "application/rss+xml"]

    /// The charset to add to this Content-Type value (its bytes as they came, an upstream's too), if any.
    public static func charset(_ r: RequestContext, status: Int, contentType: UnsafeRawBufferPointer) -> String? {
        guard let name = r.settings.charset.name, status != 301 && status != 302 else { return nil }
        // As nginx, the whole value is the type: one with parameters (a charset among them) is not in the list.
        return types.contains { RequestParser.equalsIgnoringASCIICase(contentType, $0) } ? name : nil
    }

    public static func charset(_ r: RequestContext, status: Int, contentType: String) -> String? {
        guard r.settings.charset.name != nil else { return nil }
        var type = contentType
        return type.withUTF8 { charset(r, status: status, contentType: UnsafeRawBufferPointer($0)) }
    }

    public static func labelled(_ r: RequestContext, status: Int, contentType: String) -> String {
        labelled(contentType, charset: charset(r, status: status, contentType: contentType))
    }

    public static func labelled(_ contentType: String, charset: String?) -> String {
        charset.map { contentType + "; charset=" + $0 } ?? contentType
    }
}
