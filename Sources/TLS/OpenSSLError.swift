#if canImport(Glibc)
import Glibc
#endif
import COpenSSL

/// OpenSSL's error queue as nginx prints it: ` (SSL: error:0A00010B:SSL routines::wrong version number)`.
enum OpenSSLError {
    /// Empties the thread's queue into nginx's suffix; "" when it held nothing.
    static func drain() -> String {
        var parts: [String] = []
        var buf = [CChar](repeating: 0, count: 256)
        var data: UnsafePointer<CChar>?
        var flags: Int32 = 0
        while true {
            let code = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if code == 0 { break }
            ERR_error_string_n(code, &buf, buf.count)
            var text = String(cString: buf)
            if let data, flags & ERR_TXT_STRING != 0, data.pointee != 0 { text += ":" + String(cString: data) }
            parts.append(text)
        }
        return parts.isEmpty ? "" : " (SSL: " + parts.joined(separator: " ") + ")"
    }

    /// Throws away what earlier calls left, so that SSL_get_error judges only the call about to be made.
    @inline(__always) static func clear() { ERR_clear_error() }
}
