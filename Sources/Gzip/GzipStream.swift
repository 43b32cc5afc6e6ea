import CZlib

/// One gzip-compressed response body, produced as the body streams through (never buffered whole). The
/// deflate state is large (a 32 kB window and its hash chains), so a worker keeps finished streams and
/// resets them for the next response instead of allocating one per response (nginx preallocates per request
/// from its pool for the same reason).
public final class GzipStream {
    private var z = z_stream()
    private var out = [UInt8](repeating: 0, count: 16384)
    public let level: Int32

    public init?(level: Int32) {
        self.level = level
        guard vigil_deflate_init_gzip(&z, level, 15, 8) == Z_OK else { return nil }
    }

    deinit { deflateEnd(&z) }

    /// Compresses `input`; with `finish`, also ends the stream (gzip trailer). Each piece of output goes to
    /// `emit` as soon as deflate produces it.
    public func compress(_ input: UnsafeRawBufferPointer, finish: Bool, _ emit: (UnsafeRawBufferPointer) -> Void) {
        z.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        z.avail_in = uInt(input.count)
        let flush = finish ? Z_FINISH : Z_NO_FLUSH
        out.withUnsafeMutableBytes { o in
            repeat {
                z.next_out = o.baseAddress!.assumingMemoryBound(to: Bytef.self)
                z.avail_out = uInt(o.count)
                let rc = deflate(&z, flush)
                let produced = o.count - Int(z.avail_out)
                if produced > 0 { emit(UnsafeRawBufferPointer(rebasing: o[0..<produced])) }
                if rc == Z_STREAM_END || rc == Z_STREAM_ERROR { break }
                if rc == Z_BUF_ERROR && z.avail_in == 0 && !finish { break }
            } while z.avail_out == 0 || z.avail_in > 0 || finish
        }
        z.next_in = nil
    }

    /// Ready for the next response.
    public func reset() { deflateReset(&z) }
}

/// Finished streams of one worker, by compression level, reset for reuse (bounded).
public final class GzipPool {
    private var spare: [Int32: [GzipStream]] = [:]
    private let keep: Int
    public init(keep: Int = 16) { self.keep = keep }

    public func take(level: Int32) -> GzipStream? {
        if let s = spare[level]?.popLast() { return s }
        return GzipStream(level: level)
    }

    public func give(_ s: GzipStream) {
        s.reset()
        if spare[s.level, default: []].count < keep { spare[s.level, default: []].append(s) }
    }
}
