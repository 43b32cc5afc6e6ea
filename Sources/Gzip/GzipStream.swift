import Core
import CZlib

/// One gzip-compressed response body, produced as the body streams through (never buffered whole). The
/// deflate state is large (a 32 kB window and its hash chains), so a worker keeps finished streams and
/// resets them for the next response instead of allocating one per response (nginx preallocates per request
/// from its pool for the same reason). As in nginx, deflate runs raw and the stream writes the gzip header and
/// trailer itself; the trailer's CRC comes from `vigil_crc32`, several times faster than zlib's wrapper.
public final class GzipStream {
    private var z = z_stream()
    private var out = [UInt8](repeating: 0, count: 16384)
    /// The header nginx 1.22 sends (zlib's gzip wrapper): no name, no time, Unix; its extra flags (byte 8) are
    /// zlib's, which name the fastest (level 1) or best (9) compression.
    private static let header: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]
    private var headerWritten = false
    private var trailerWritten = false
    private var crc: UInt32 = 0
    /// The input's length modulo 2^32, as the trailer records it.
    private var inputSize: UInt32 = 0
    /// Output held in `out` between calls: a small body's gzip header, data and trailer leave as one piece
    /// (one chunk), as nginx sends them, instead of a 10-byte header chunk first.
    private var held = 0
    public let level: Int32
    /// Window bits and memory level: smaller for a short body of known length, as nginx sizes them (a
    /// reset clears the hash table, which is 64 kB at the defaults and 8 kB for a 2 kB body).
    let windowBits: Int32
    let memLevel: Int32

    public init?(level: Int32, windowBits: Int32 = 15, memLevel: Int32 = 8) {
        self.level = level
        self.windowBits = windowBits
        self.memLevel = memLevel
        guard vigil_deflate_init_raw(&z, level, windowBits, memLevel) == Z_OK else { return nil }
    }

    /// nginx's gzip filter sizing: halve the window (and the hash) while the body still fits.
    public static func sizes(forLength length: Int?) -> (windowBits: Int32, memLevel: Int32) {
        var wbits: Int32 = 15, mem: Int32 = 8
        if let length, length > 0 {
            while wbits > 9 && length < (1 << (wbits - 1)) - 262 {
                wbits -= 1
                mem -= 1
            }
        }
        return (wbits, max(mem, 1))
    }

    deinit { deflateEnd(&z) }

    /// Compresses `input`; with `finish`, also ends the stream (gzip trailer). Output goes to `emit` in pieces
    /// of 16 kB as deflate fills them, and what is left with the end of the stream.
    public func compress(_ input: UnsafeRawBufferPointer, finish: Bool, _ emit: (UnsafeRawBufferPointer) -> Void) {
        if let base = input.baseAddress, input.count > 0 {
            crc = vigil_crc32(crc, base.assumingMemoryBound(to: UInt8.self), input.count)
            inputSize &+= UInt32(truncatingIfNeeded: input.count)
        }
        z.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        z.avail_in = uInt(input.count)
        let flush = finish ? Z_FINISH : Z_NO_FLUSH
        out.withUnsafeMutableBytes { o in
            if !headerWritten {
                Self.header.withUnsafeBytes { o.baseAddress!.advanced(by: held).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                o[held + 8] = level == 9 ? 2 : level == 1 ? 4 : 0
                held += Self.header.count
                headerWritten = true
            }
            while true {
                z.next_out = o.baseAddress!.assumingMemoryBound(to: Bytef.self) + held
                z.avail_out = uInt(o.count - held)
                let rc = deflate(&z, flush)
                held = o.count - Int(z.avail_out)
                let full = held == o.count
                if full {
                    emit(UnsafeRawBufferPointer(o))
                    held = 0
                }
                if rc == Z_STREAM_END || rc == Z_STREAM_ERROR { break }
                // Without `finish`, deflate is done once it has taken all the input and had room to spare.
                if !finish && z.avail_in == 0 && (!full || rc == Z_BUF_ERROR) { break }
            }
            guard finish else { return }
            // A stream finished once may be asked to finish again (a body's last piece, then its end): one trailer.
            if !trailerWritten {
                if held + 8 > o.count {
                    emit(UnsafeRawBufferPointer(rebasing: o[0..<held]))
                    held = 0
                }
                o.baseAddress!.storeBytes(of: crc.littleEndian, toByteOffset: held, as: UInt32.self)
                o.baseAddress!.storeBytes(of: inputSize.littleEndian, toByteOffset: held + 4, as: UInt32.self)
                held += 8
                trailerWritten = true
            }
            if held > 0 {
                emit(UnsafeRawBufferPointer(rebasing: o[0..<held]))
                held = 0
            }
        }
        z.next_in = nil
    }

    /// Ready for the next response.
    public func reset() {
        deflateReset(&z)
        held = 0
        headerWritten = false
        trailerWritten = false
        crc = 0
        inputSize = 0
    }
}

/// Finished streams of one worker, by compression level and size, reset for reuse (bounded).
public final class GzipPool {
    /// Spare streams by level and size: a worker sees a handful of those, so a short list beats hashing.
    private var spare: [(key: Int32, streams: Pool<GzipStream>)] = []
    private let keep: Int
    public init(keep: Int = 16) { self.keep = keep }

    private static func key(_ level: Int32, _ wbits: Int32, _ mem: Int32) -> Int32 { level << 8 | wbits << 4 | mem }

    private func streams(_ key: Int32) -> Pool<GzipStream> {
        if let i = spare.firstIndex(where: { $0.key == key }) { return spare[i].streams }
        let p = Pool<GzipStream>(keep: keep)
        spare.append((key, p))
        return p
    }

    /// A stream for a body of `length` bytes (nil: unknown, the full window).
    public func take(level: Int32, length: Int?) -> GzipStream? {
        let (wbits, mem) = GzipStream.sizes(forLength: length)
        return streams(GzipPool.key(level, wbits, mem)).take() ?? GzipStream(level: level, windowBits: wbits, memLevel: mem)
    }

    public func give(_ s: GzipStream) {
        s.reset()
        streams(GzipPool.key(s.level, s.windowBits, s.memLevel)).give(s)
    }
}
