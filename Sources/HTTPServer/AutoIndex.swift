#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP

/// nginx's autoindex module: a GET or HEAD for a URI ending in "/" whose directory has no index file (the index
/// module ran first) is answered with a listing of the directory, byte for byte as nginx 1.22 writes it. As in
/// nginx, the head goes out before the directory is read, without a length (chunked, or until the close).
enum AutoIndex {
    struct Entry {
        var name: [UInt8]
        var isDirectory: Bool
        var isFile: Bool
        var mtime: Int
        var size: Int
    }

    /// False when the module declines (autoindex off, not a directory URI, another method): static files go on.
    static func serve(_ r: RequestContext) -> Bool {
        guard r.settings.autoIndex.on, r.uri.hasSuffix("/"), r.method == "GET" || r.method == "HEAD" else { return false }
        let pipeline = r.service.pipeline!
        guard StaticFiles.isSafe(r.uri) else { pipeline.respondError(r, 400); return true }
        var path = StaticFiles.filePath(r.uri, r)
        if path.utf8.count > 1 && path.hasSuffix("/") { path.removeLast() }

        var format = r.settings.autoIndex.format
        var callback: String?
        if format == .jsonp {
            switch jsonpCallback(r) {
            case .invalid: pipeline.respondError(r, 400); return true
            case .name(let name): callback = name
            case .none: format = .json
            }
        }

        guard let dir = opendir(path) else {
            let e = errno
            let status = e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG ? 404 : e == EACCES ? 403 : 500
            r.log.log(status == 500 ? .crit : .error, "opendir() \"\(path)\" failed (\(Errno.text(e)))\(r.logContext)")
            pipeline.respondError(r, status)
            return true
        }
        defer { closedir(dir) }

        let contentType: String
        switch format {
        case .json: contentType = "application/json"
        case .jsonp: contentType = "application/javascript"
        case .xml: contentType = "text/xml; charset=utf-8"
        case .html: contentType = "text/html"
        }
        let isHead = r.method == "HEAD"
        let sink = r.sink
        let compressible = GzipFilter.eligible(r, status: r.statusOverride ?? 200, contentType: contentType, contentLength: nil, encoded: false)
        let gzipping = compressible && GzipFilter.accepted(r) && sink.startGzip(length: nil)
        let labelled = CharsetFilter.contentType(r, contentType, status: r.statusOverride ?? 200, encoded: false)
        let charset = CharsetFilter.split(labelled).charset
        sink.sendHead(status: 200, framing: isHead ? .length : r.transport.framesUnknownLength ? .chunked : .close) { w in
            w.header("Content-Type", labelled)
            if gzipping { w.header("Content-Encoding", "gzip") }
            if compressible && r.settings.gzip.vary { w.header("Vary", "Accept-Encoding") }
        }
        if isHead { sink.finish(); return true }

        guard var entries = read(dir, path, r) else { r.transport.abort(); return true }
        // Directories first, then by name as strcmp orders bytes.
        entries.sort { $0.isDirectory != $1.isDirectory ? $0.isDirectory : $0.name.lexicographicallyPrecedes($1.name) }
        let body: [UInt8]
        switch format {
        // Names are cut by characters when the page's charset (the charset filter's) is utf-8, else by bytes.
        case .html: body = html(entries, r, utf8: charset?.lowercased() == "utf-8")
        case .json, .jsonp: body = json(entries, callback: callback)
        case .xml: body = xml(entries)
        }
        body.withUnsafeBytes { _ = sink.sendBody($0) }
        sink.finish()
        return true
    }

    enum Callback { case none, name(String), invalid }
    enum StatOutcome { case found, skipped, failed }

    /// `$arg_callback`, checked as nginx does: at most 128 letters, digits, `_` and `.`; empty is plain JSON.
    static func jsonpCallback(_ r: RequestContext) -> Callback {
        guard let name = r.value(.arg("callback")), !name.isEmpty else { return .none }
        if name.utf8.count > 128 {
            r.log.info("client sent too long callback name: \"\(name)\"\(r.logContext)")
            return .invalid
        }
        for c in name.utf8 {
            switch c | 0x20 {
            case UInt8(ascii: "a")...UInt8(ascii: "z"): continue
            default:
                if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: ".") { continue }
                r.log.info("client sent invalid callback name: \"\(name)\"\(r.logContext)")
                return .invalid
            }
        }
        return .name(name)
    }

    /// The directory's entries but the hidden ones, with what stat() says of each (the link itself when it
    /// points nowhere); nil after an error nginx ends the response for.
    static func read(_ dir: OpaquePointer, _ path: String, _ r: RequestContext) -> [Entry]? {
        let fd = dirfd(dir)
        var entries: [Entry] = []
        while true {
            errno = 0
            guard let de = readdir(dir) else {
                guard errno == 0 else {
                    r.log.log(.crit, "readdir() \"\(path)\" failed (\(Errno.text(errno)))\(r.logContext)")
                    return nil
                }
                return entries
            }
            let name = withUnsafeBytes(of: de.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name.first == UInt8(ascii: ".") { continue }
            var st = stat()
            let outcome = withUnsafeBytes(of: de.pointee.d_name) { raw -> StatOutcome in
                let cName = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
                if fstatat(fd, cName, &st, 0) == 0 { return .found }
                let e = errno
                let file = path + "/" + String(decoding: name, as: UTF8.self)
                guard e == ENOENT || e == ELOOP else {
                    r.log.log(.crit, "stat() \"\(file)\" failed (\(Errno.text(e)))\(r.logContext)")
                    // An entry the workers' user may not stat is left out; any other failure ends the listing.
                    return e == EACCES ? .skipped : .failed
                }
                if fstatat(fd, cName, &st, AT_SYMLINK_NOFOLLOW) == 0 { return .found }
                r.log.log(.crit, "lstat() \"\(file)\" failed (\(Errno.text(errno)))\(r.logContext)")
                return .failed
            }
            if outcome == .skipped { continue }
            if outcome == .failed { return nil }
            entries.append(Entry(name: name, isDirectory: st.st_mode & S_IFMT == S_IFDIR, isFile: st.st_mode & S_IFMT == S_IFREG,
                                 mtime: Int(st.st_mtim.tv_sec), size: Int(st.st_size)))
        }
    }

    static let nameWidth = 50

    /// The HTML page: names cut to 50 characters (47 and "..>"), padded to line up the date and size columns.
    static func html(_ entries: [Entry], _ r: RequestContext, utf8: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(200 + entries.count * 140)
        let uri = Array(r.uri.utf8)
        out += Array("<html>\r\n<head><title>Index of ".utf8)
        HTMLText.append(uri, to: &out)
        out += Array("</title></head>\r\n<body>\r\n<h1>Index of ".utf8)
        HTMLText.append(uri, to: &out)
        out += Array("</h1><hr><pre><a href=\"../\">../</a>\r\n".utf8)
        // nginx adds the offset of now to every time, whatever the offset was then.
        var offset = 0
        if r.settings.autoIndex.localTime {
            var now = time(nil), t = tm()
            localtime_r(&now, &t)
            offset = t.tm_gmtoff / 60 * 60
        }
        for e in entries {
            out += Array("<a href=\"".utf8)
            URIText.append(e.name, escaping: .component, to: &out)
            if e.isDirectory { out.append(UInt8(ascii: "/")) }
            out += Array("\">".utf8)
            var length = utf8 ? utf8Length(e.name) : e.name.count
            // The characters shown: all of them, or 47 when they are more than 50.
            let shown = length > nameWidth ? nameWidth - 3 : length
            let shownBytes = length == e.name.count ? shown : utf8Prefix(e.name, characters: shown)
            HTMLText.append(e.name.prefix(shownBytes), to: &out)
            if length > nameWidth {
                out += Array("..&gt;</a>".utf8)
            } else {
                if e.isDirectory && length < nameWidth {
                    out.append(UInt8(ascii: "/"))
                    length += 1
                }
                out += Array("</a>".utf8)
                out += repeatElement(UInt8(ascii: " "), count: nameWidth - length)
            }
            out.append(UInt8(ascii: " "))
            var t = time_t(e.mtime + offset), tmv = tm()
            gmtime_r(&t, &tmv)
            out += Array("\(Clock.two(tmv.tm_mday))-\(Clock.months[Int(tmv.tm_mon)])-\(tmv.tm_year + 1900) \(Clock.two(tmv.tm_hour)):\(Clock.two(tmv.tm_min)) ".utf8)
            out += Array(sizeColumn(e, exact: r.settings.autoIndex.exactSize).utf8)
            out += [13, 10]
        }
        out += Array("</pre><hr></body>\r\n</html>\r\n".utf8)
        return out
    }

    /// 19 columns of bytes, or 7 of a size rounded to K, M or G (halves up) past 9999 bytes; "-" for a directory.
    static func sizeColumn(_ e: Entry, exact: Bool) -> String {
        if e.isDirectory { return exact ? padded("-", 19) : padded("-", 7) }
        if exact { return padded(String(e.size), 19) }
        let length = e.size
        for (unit, scale) in [(1 << 30, "G"), (1 << 20, "M"), (1024, "K")] where length > (unit == 1024 ? 9999 : unit - 1) {
            return padded(String(length / unit + (length % unit > unit / 2 - 1 ? 1 : 0)), 6) + scale
        }
        return padded(String(length), 7)
    }

    /// The JSON array (in `callback( … );` for jsonp): type, mtime as an HTTP date, and a file's size.
    static func json(_ entries: [Entry], callback: String?) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(20 + entries.count * 100)
        if let callback { out += Array("/* callback */\r\n\(callback)(".utf8) }
        out.append(UInt8(ascii: "["))
        for (i, e) in entries.enumerated() {
            out += Array((i == 0 ? "\r\n{ \"name\":\"" : ",\r\n{ \"name\":\"").utf8)
            JSONText.append(e.name, to: &out)
            out += Array("\", \"type\":\"\(type(e))\", \"mtime\":\"\(Clock.httpDate(at: e.mtime))".utf8)
            out += Array((e.isFile ? "\", \"size\":\(e.size) }" : "\" }").utf8)
        }
        out += Array("\r\n]".utf8)
        if callback != nil { out += Array(");".utf8) }
        return out
    }

    /// The XML list: an element per entry named by its type, mtime in GMT, a file's size.
    static func xml(_ entries: [Entry]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(40 + entries.count * 100)
        out += Array("<?xml version=\"1.0\"?>\r\n<list>\r\n".utf8)
        for e in entries {
            var t = time_t(e.mtime), tmv = tm()
            gmtime_r(&t, &tmv)
            let mtime = "\(padded(String(tmv.tm_year + 1900), 4))-\(Clock.two(tmv.tm_mon + 1))-\(Clock.two(tmv.tm_mday))T\(Clock.two(tmv.tm_hour)):\(Clock.two(tmv.tm_min)):\(Clock.two(tmv.tm_sec))Z"
            out += Array("<\(type(e)) mtime=\"\(mtime)\(e.isFile ? "\" size=\"\(e.size)" : "")\">".utf8)
            HTMLText.append(e.name, to: &out)
            out += Array("</\(type(e))>\r\n".utf8)
        }
        out += Array("</list>\r\n".utf8)
        return out
    }

    static func type(_ e: Entry) -> String { e.isDirectory ? "directory" : e.isFile ? "file" : "other" }

    static func padded(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - s.utf8.count)) + s }

    /// Characters as nginx's ngx_utf8_length counts them: the byte count when the name is not UTF-8.
    static func utf8Length(_ name: [UInt8]) -> Int {
        var i = 0, n = 0
        while i < name.count {
            if name[i] >= 0x80 {
                guard let next = utf8Decode(name, at: i) else { return name.count }
                i = next
            } else {
                i += 1
            }
            n += 1
        }
        return n
    }

    /// The bytes of the first `characters` characters of a name ngx_utf8_length found valid.
    static func utf8Prefix(_ name: [UInt8], characters: Int) -> Int {
        var i = 0
        for _ in 0..<characters where i < name.count {
            i = name[i] < 0x80 ? i + 1 : utf8Decode(name, at: i) ?? name.count
        }
        return i
    }

    /// ngx_utf8_decode: the index after the character at `i`, or nil when it is not one (nginx is lenient
    /// about continuation bytes and strict about overlong forms and the range).
    static func utf8Decode(_ p: [UInt8], at i: Int) -> Int? {
        var u = UInt32(p[i]), valid: UInt32, len: Int
        if u >= 0xF0 { u &= 0x07; valid = 0xFFFF; len = 3 }
        else if u >= 0xE0 { u &= 0x0F; valid = 0x7FF; len = 2 }
        else if u >= 0xC2 { u &= 0x1F; valid = 0x7F; len = 1 }
        else { return nil }
        guard p.count - i - 1 >= len else { return nil }
        for k in 1...len {
            let c = UInt32(p[i + k])
            guard c >= 0x80 else { return nil }
            u = u << 6 | (c & 0x3F)
        }
        return u > valid && u <= 0x10FFFF ? i + len + 1 : nil
    }
}
