#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Event
import ShmTable

/// nginx's cache manager and cache loader for one `*_cache_path`, run on a worker's loop rather than in
/// processes of their own: one worker at a time claims the manager's part (another takes over when it is gone),
/// and a pass is bounded in files.
///
/// The manager, paced as nginx's: keys unused for `inactive` go with their files, and the least recently used go
/// while the files take more than `max_size`, the file system has less than `min_free` left, or the zone is
/// past its watermark (seven eighths of the keys it held when it first ran full); a pass that removed
/// `manager_files` is followed by another `manager_sleep` later, one with nothing left to do by another when the
/// oldest key turns inactive (at most 10 s).
/// The loader: one worker claims the zone once, and walks the directory `loader_files` entries at a time
/// (`loader_sleep` apart), making the files already on disk known to the zone, so that they count for
/// `max_size` and expire when unused.
final class CacheManager {
    private let zone: CacheZone
    private let spec: CacheZoneSpec
    private let loop: EventLoop
    private var timer: Timer?
    /// The loader's directories still to read, when this worker loads.
    private var pending: [String] = []
    private var loading = false

    init(store: CacheStore, loop: EventLoop) {
        zone = store.zone
        spec = store.spec
        self.loop = loop
        // The first pass soon after the start, as nginx's manager process makes one when it starts.
        schedule(after: 100 + UInt64.random(in: 0..<200))
    }

    deinit { timer?.cancel() }

    private func schedule(after ms: UInt64) {
        timer = loop.schedule(after: ms) { [weak self] in self?.pass() }
    }

    private func pass() {
        let now = Int(time(nil))
        var next: UInt64 = 1000
        if zone.claimManaging(pid: getpid()) {
            let gone = zone.expire(now: now, inactive: spec.inactive, maxBlocks: spec.maxSize.map { UInt64($0 / 512) },
                                   short: shortOfSpace, limit: spec.managerFiles)
            for digest in gone { unlink(ProxyCache.path(of: digest, in: spec)) }
            next = gone.count == spec.managerFiles ? UInt64(spec.managerSleepMs)
                : UInt64(zone.secondsToNextExpiry(now: now, inactive: spec.inactive)) * 1000
        }
        if !loading && zone.claimLoading(pid: getpid()) {
            loading = true
            pending = [spec.path]
        }
        if loading {
            load(now: now)
            next = min(next, UInt64(spec.loaderSleepMs))
        }
        schedule(after: next)
    }

    /// min_free: the file system holding the cache has less free space than that.
    private var shortOfSpace: Bool {
        guard spec.minFree > 0 else { return false }
        var fs = statvfs()
        guard statvfs(spec.path, &fs) == 0 else { return false }
        return Int(fs.f_bavail) * Int(fs.f_frsize) < spec.minFree
    }

    /// Up to `loader_files` entries of the walk.
    private func load(now: Int) {
        var seen = 0
        while seen < spec.loaderFiles, let dir = pending.popLast() {
            guard let d = opendir(dir) else { continue }
            defer { closedir(d) }
            while let e = readdir(d) {
                seen += 1
                let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let path = dir + "/" + name
                if e.pointee.d_type == UInt8(DT_DIR) {
                    pending.append(path)
                } else if let digest = name.utf8.withContiguousStorageIfAvailable({ ProxyCache.digest(ofName: UnsafeRawBufferPointer($0)) }) ?? nil {
                    let fd = open(path, O_RDONLY | O_CLOEXEC)
                    guard fd >= 0 else { continue }
                    var st = stat()
                    if fstat(fd, &st) == 0, let file = CacheFile.read(fd) {
                        zone.load(digest, validUntil: file.validUntil, blocks: UInt64(st.st_blocks), lastUse: now)
                    }
                    close(fd)
                }
            }
        }
        if pending.isEmpty {
            loading = false
            zone.finishLoading()
        }
    }
}
