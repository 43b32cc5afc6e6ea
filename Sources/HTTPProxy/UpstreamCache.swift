#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP
import HTTPServer
import ShmTable
import Upstream

/// The upstream cache in a proxied request, as nginx's ngx_http_upstream_cache: before any peer is asked, the
/// key's file answers when fresh (HIT); a stale one is kept while the upstream refreshes it (EXPIRED), answers
/// when the upstream fails as `*_cache_use_stale` allows (STALE) or while another request refreshes it
/// (UPDATING), and is revalidated with the upstream's 304 (REVALIDATED). A response the policy lets in is
/// written beside its place as it is relayed and renamed there once whole.
extension ProxySession {
    /// Looks the request up in its location's cache. True when the request is answered from the cache or waits
    /// for another request to fill it; false when it goes to the upstream.
    func lookUpCache(_ cache: ProxyCache) -> Bool {
        guard cache.settings.methods.contains(request.method) else { return false }
        let store: CacheStore
        switch cache.store(for: request) {
        case .success(let s?): store = s
        case .success(nil): return false
        case .failure(let unknown):
            request.log.error("cache \"\(unknown.name)\" not found\(request.logContext)")
            giveUp(500)
            return true
        }
        cacheStore = store
        let key = Array(cache.key.render(request).utf8)
        let (mainDigest, path) = ProxyCache.locate(key, in: store.spec)
        cacheKey = key
        cacheDigest = mainDigest
        cachePath = path
        cacheable = true
        // proxy_cache_convert_head: a HEAD is looked up, and asked for, as its GET.
        if request.method == "HEAD" && cache.settings.convertHead { upstreamMethod = "GET" }
        if ProxyCache.anySet(cache.settings.bypass, request) {
            request.cacheStatus = "BYPASS"
            return false
        }
        request.cacheStatus = "MISS"
        let now = Int(time(nil))
        guard var entry = store.use(mainDigest, now: now, nowMs: loop.now, lockAge: cache.settings.lockAge) else {
            request.log.log(.alert, "could not allocate node in cache keys zone \"\(store.zone.name)\"\(request.logContext)")
            cacheable = false
            return false
        }
        if entry.error != 0 && entry.validUntil > now {
            request.cacheStatus = "HIT"
            giveUp(entry.error)
            return true
        }
        var found = openCached()
        // A response that varies, stored for another variant: this variant's own lies at its secondary key.
        if let main = found, !main.file.varyNames.isEmpty {
            let variant = CachePolicy.variant(main.file.varyNames, request)
            if variant != main.file.variant {
                close(main.fd)
                mainVaryNames = main.file.varyNames
                mainKey = (key, mainDigest, path)
                cacheKey = key + [0x0A] + variant
                (cacheDigest, cachePath) = ProxyCache.locate(cacheKey, in: store.spec)
                guard let e = store.use(cacheDigest!, now: now, nowMs: loop.now, lockAge: cache.settings.lockAge) else {
                    cacheable = false
                    return false
                }
                entry = e
                found = openCached()
            }
        }
        let digest = cacheDigest!
        if !rangeCacheable(cache.settings.maxRangeOffset) { cacheable = false }
        if let found {
            if found.file.validUntil > now {
                if !entry.exists { store.stored(digest, validUntil: found.file.validUntil, blocks: found.blocks, now: now) }
                serveCached(found, "HIT")
                return true
            }
            // Stale: the first request to see it refreshes it; the others serve it meanwhile if allowed
            // (use_stale updating, or the response's own stale-while-revalidate).
            let servesWhileUpdating = cache.settings.useStale.contains(.updating) || now < found.file.validUntil + found.file.updatingSeconds
            if store.zone.lock(digest, nowMs: loop.now, lockAge: cache.settings.lockAge) || request.isBackground {
                holdsCacheLock = true
                if servesWhileUpdating && cache.settings.backgroundUpdate && !request.isBackground {
                    // The refresh is a request of its own, holding the lock; this one answers stale at once.
                    holdsCacheLock = false
                    BackgroundRequest.start(from: request, handler: proxy)
                    serveCached(found, "STALE")
                    return true
                }
            } else if servesWhileUpdating {
                serveCached(found, "UPDATING")
                return true
            }
            cached = found
            request.cacheStatus = "EXPIRED"
            if cache.settings.revalidate {
                request.cacheValidators = (found.file.lastModified >= 0 ? Clock.httpDate(at: found.file.lastModified) : nil,
                                           found.file.etag.isEmpty ? nil : found.file.etag)
            }
            return false
        }
        if entry.exists { store.zone.lost(digest) }
        if entry.uses < cache.settings.minUses { cacheable = false }
        guard cache.settings.lock && cacheable else { return false }
        if store.zone.lock(digest, nowMs: loop.now, lockAge: cache.settings.lockAge) {
            holdsCacheLock = true
            return false
        }
        awaitCacheLock(cache, store, since: loop.now)
        return true
    }

    /// `*_cache_lock`: another request is filling the key. Looked at again every 50 ms: its file answers once
    /// it is there; the lock, if its holder let it go; after `*_cache_lock_timeout` the request goes to the
    /// upstream and its response is not stored, as nginx's.
    private func awaitCacheLock(_ cache: ProxyCache, _ store: CacheStore, since: UInt64) {
        cacheLockTimer = loop.schedule(after: 50) { [weak self] in
            guard let self, self.phase == .connecting, let digest = self.cacheDigest else { return }
            self.cacheLockTimer = nil
            if let found = self.openCached(), found.file.validUntil > Int(time(nil)) {
                return self.serveCached(found, "HIT")
            }
            if store.zone.lock(digest, nowMs: self.loop.now, lockAge: cache.settings.lockAge) {
                self.holdsCacheLock = true
            } else if self.loop.now - since < UInt64(cache.settings.lockTimeout) {
                return self.awaitCacheLock(cache, store, since: since)
            } else {
                self.cacheable = false
            }
            self.askUpstream()
        }
    }

    /// `*_cache_max_range_offset`: a range request that starts past it (or from the end) is passed to the
    /// upstream with its Range, and its response is not stored, as nginx's ngx_http_upstream_cache_check_range.
    private func rangeCacheable(_ maxOffset: Int?) -> Bool {
        guard let maxOffset, let range = request.header("range") else { return true }
        if maxOffset == 0 { return false }
        guard range.hasPrefix("bytes="), let first = range.dropFirst(6).trimmingSpaces().first, first != "-" else { return false }
        let digits = range.dropFirst(6).trimmingSpaces().prefix { $0.isASCII && $0.isNumber }
        guard let offset = Int(digits) else { return true }
        return offset <= maxOffset
    }

    /// The key's file, when it is one of ours for this very key.
    func openCached() -> OpenCacheFile? {
        let fd = open(cachePath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, let file = CacheFile.read(fd), file.key == cacheKey, Int(st.st_size) >= file.bodyStart else {
            close(fd)
            return nil
        }
        return OpenCacheFile(fd: fd, file: file, size: Int(st.st_size), blocks: UInt64(st.st_blocks))
    }

    /// Answers from a cached file: its head goes through the same processing as an upstream's (headers hidden
    /// and passed, add_header, gzip, ranges), then its body is read from the file.
    func serveCached(_ found: OpenCacheFile, _ status: String) {
        request.cacheStatus = status
        if let c = cached, c.fd != found.fd { close(c.fd) }
        cached = found
        replaying = true
        if let r = records {
            request.service.buffers.giveResponse(r)
            records = nil
        }
        let f = found.file
        if f.status == 200, f.lastModified >= 0 || !f.etag.isEmpty {
            let etag = f.etag.isEmpty ? nil : f.etag
            switch Conditional.evaluate(request, lastModified: f.lastModified, etag: etag) {
            case .full: break
            case .notModified:
                phase = .done
                var validators: [(String, String)] = []
                if f.lastModified >= 0 { validators.append(("Last-Modified", Clock.httpDate(at: f.lastModified))) }
                if let etag { validators.append(("ETag", etag)) }
                return request.sink.respond(status: 304, contentType: nil, body: [], extra: validators)
            case .preconditionFailed:
                return giveUp(412)
            }
        }
        var head = [UInt8](repeating: 0, count: f.headLength)
        guard pread(found.fd, &head, head.count, off_t(f.bodyStart - f.headLength)) == head.count,
              lseek(found.fd, off_t(f.bodyStart), SEEK_SET) >= 0 else {
            request.log.log(.crit, "cache file \"\(cachePath)\" could not be read (\(Errno.text(errno)))\(request.logContext)")
            return giveUp(500)
        }
        response.consume(response.readable)
        head.withUnsafeBytes { response.append($0) }
        var tail = "Content-Length: \(found.bodyLength)\r\n\r\n"
        tail.withUTF8 { response.append(UnsafeRawBufferPointer($0)) }
        // A file has no readiness to wait for: it is read to its end.
        hungUp = true
        phase = .readingHead
        parseHead()
        if phase == .relaying { readResponse() }
    }

    /// The upstream failed as `*_cache_use_stale` names: the stale file answers. False when it may not.
    func servesStale(after failure: UpstreamFailure) -> Bool {
        guard let found = cached, staleAllowed(after: failure) else { return false }
        phase = .connecting
        serveCached(found, "STALE")
        return true
    }

    /// Whether a stale file is kept and `*_cache_use_stale` names the failure.
    func staleAllowed(after failure: UpstreamFailure) -> Bool {
        guard let stale = cached, !replaying, let cache = route.cache else { return false }
        // The response's own stale-if-error serves it on any failure, for as long as it says.
        if Int(time(nil)) < stale.file.validUntil + stale.file.errorSeconds { return true }
        let reason: NextUpstream
        switch failure {
        case .error: reason = .error
        case .timeout: reason = .timeout
        case .invalidHeader: reason = .invalidHeader
        case .status(let s): reason = NextUpstream(status: s) ?? []
        }
        return !reason.isEmpty && cache.settings.useStale.contains(reason)
    }

    /// The upstream's 304 to a revalidation: the stale file is fresh again, for as long as the 304's head (else
    /// `*_cache_valid` for the stored status) says, and answers.
    func revalidated(_ found: OpenCacheFile, fields: [(name: String, value: String)]) {
        guard let cache = route.cache, let store = cacheStore, let digest = cacheDigest else { return giveUp(502) }
        let now = Int(time(nil))
        if let until = CachePolicy.freshness(status: found.file.status, fields: fields, ignored: cache.ignored, settings: cache.settings, now: now)?.validUntil,
           CacheFile.refresh(path: cachePath, validUntil: until) {
            store.stored(digest, validUntil: until, blocks: found.blocks, now: now)
            holdsCacheLock = false
        }
        phase = .connecting
        serveCached(found, "REVALIDATED")
    }

    /// On the upstream's head: whether the response goes into the cache (the request may be stored, the head's
    /// policy gives it a lifetime, no `*_no_cache` value is set, and it is relayed buffered), and if so the file
    /// it is written to, its preamble and head first.
    func startCaching(_ h: ResponseHead, fields: [HeaderField], parsed: UnsafeRawBufferPointer) {
        guard cacheable, let cache = route.cache, conf.buffering, !ProxyCache.anySet(cache.settings.noCache, request) else { return }
        let now = Int(time(nil))
        let strings = ProxyCache.strings(fields, parsed)
        guard let freshness = CachePolicy.freshness(status: h.status, fields: strings, ignored: cache.ignored, settings: cache.settings, now: now) else { return }
        let until = freshness.validUntil
        let varyNames = cache.ignored.contains(.vary) ? [] : CachePolicy.varyNames(strings.filter { $0.name.lowercased() == "vary" }.map(\.value))
        var head = Array("HTTP/1.1 \(h.status) \(h.reason)\r\n".utf8)
        for f in fields where !ProxyCache.framing(parsed[f.name]) {
            head += parsed[f.name]
            head += [0x3A, 0x20]
            head += parsed[f.value]
            head += [0x0D, 0x0A]
        }
        // As nginx's variant update: a response that no longer varies as the main key's did replaces that one.
        if let main = mainKey, varyNames != mainVaryNames {
            if holdsCacheLock, let digest = cacheDigest { cacheStore?.zone.unlock(digest) }
            holdsCacheLock = false
            (cacheKey, cacheDigest, cachePath) = main
            mainKey = nil
        }
        // Only a 200's or 206's validators revalidate it, as nginx's.
        let field = { (name: String) in h.status == 200 || h.status == 206 ? strings.last { $0.name.lowercased() == name }?.value : nil }
        let file = CacheFile(validUntil: until, updatingSeconds: freshness.updatingSeconds, errorSeconds: freshness.errorSeconds, storedAt: now, lastModified: field("last-modified").flatMap(Clock.parseHTTPDate) ?? -1,
                             status: h.status, etag: field("etag") ?? "", key: cacheKey, varyNames: varyNames,
                             variant: CachePolicy.variant(varyNames, request), headLength: head.count)
        guard let s = StoredResponse(at: cachePath, access: 0o600, log: request.log) else { return }
        file.preamble().withUnsafeBytes { s.write($0) }
        head.withUnsafeBytes { s.write($0) }
        stored = s
        cacheValidUntil = until
    }

    /// An upstream error an error_page answers (`*_intercept_errors`): cached in the zone as the key's answer
    /// for as long as the head (else `*_cache_valid`) says, when the request may be stored.
    func cacheIntercepted(_ status: Int, fields: [(name: String, value: String)]) {
        guard cacheable, let cache = route.cache, let store = cacheStore, let digest = cacheDigest,
              !ProxyCache.anySet(cache.settings.noCache, request),
              let until = CachePolicy.freshness(status: status, fields: fields, ignored: cache.ignored, settings: cache.settings, now: Int(time(nil)))?.validUntil
        else { return }
        store.zone.storedError(digest, status: status, validUntil: until)
        holdsCacheLock = false
    }

    /// The whole response was written to the cache's temporary file: it takes its place, and the zone knows it.
    func commitCached(_ s: StoredResponse) {
        guard s.commit(lastModified: nil), let store = cacheStore, let digest = cacheDigest else { return }
        store.stored(digest, validUntil: cacheValidUntil, blocks: UInt64((s.written + 4095) / 4096 * 8), now: Int(time(nil)))
        holdsCacheLock = false
    }

    /// The request is over: the fill lock it still holds goes, and the file it kept is closed.
    func endCache() {
        cacheLockTimer?.cancel()
        cacheLockTimer = nil
        if holdsCacheLock, let digest = cacheDigest { cacheStore?.zone.unlock(digest) }
        holdsCacheLock = false
        if let c = cached { close(c.fd) }
        cached = nil
    }
}

extension ProxyCache {
    /// An upstream head's fields as strings, for the cache's policy (not on the path of uncached requests).
    static func strings(_ fields: [HeaderField], _ parsed: UnsafeRawBufferPointer) -> [(name: String, value: String)] {
        fields.map { (String(decoding: parsed[$0.name], as: UTF8.self), String(decoding: parsed[$0.value], as: UTF8.self)) }
    }

    /// The framing fields a stored head leaves out: the replayed one gets the file's own Content-Length.
    static func framing(_ name: Slice<UnsafeRawBufferPointer>) -> Bool {
        RequestParser.matches(name, lowercase: "content-length") || RequestParser.matches(name, lowercase: "transfer-encoding")
            || RequestParser.matches(name, lowercase: "connection") || RequestParser.matches(name, lowercase: "keep-alive")
    }
}
