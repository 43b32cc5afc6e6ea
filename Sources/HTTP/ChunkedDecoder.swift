/// Incremental decoder for `Transfer-Encoding: chunked` bodies. Feed it bytes as they arrive; it hands
/// back data slices and says when the body ended. Sizes are strict hex (a smuggling vector otherwise), of any
/// number of digits as long as the value fits, as in nginx; unlike nginx, lines end in CRLF only and extensions
/// hold no control bytes.
public struct ChunkedDecoder: Sendable {
    enum State: Sendable { case size, sizeExtension, sizeLF, data(Int), dataCR, dataLF, trailer, trailerLineLF, trailerLF, trailerLineStart, done }

    public enum Event: Equatable {
        case data(Range<Int>)
        case end(consumed: Int)
        case error(String)
    }

    private var state: State = .size
    private var size = 0
    private var sizeDigits = 0
    private var trailerBytes = 0
    /// The sum of the chunk sizes read so far, data received or not: a body limit can be checked on it at once.
    public private(set) var announced = 0
    public let maxTrailerBytes: Int

    public init(maxTrailerBytes: Int = 8192) { self.maxTrailerBytes = maxTrailerBytes }

    public var isDone: Bool { if case .done = state { return true } else { return false } }

    /// Consumes `buf` from `start`; calls `onData` for each data range and returns where it stopped:
    /// at the end of the buffer, right after the body's final CRLF, or at an error.
    public mutating func feed(_ buf: UnsafeRawBufferPointer, from start: Int = 0, onData: (Range<Int>) -> Void) -> Event {
        var i = start
        let n = buf.count
        while i < n {
            let c = buf[i]
            switch state {
            case .size:
                if let h = hexValue(c) {
                    guard size <= Int.max >> 4 else { return .error("client sent too large chunk size") }
                    size = size * 16 + h
                    sizeDigits += 1
                    i += 1
                } else if sizeDigits == 0 {
                    return .error("client sent invalid chunked body")
                } else if c == 0x0D {
                    state = .sizeLF; i += 1
                } else if c == UInt8(ascii: ";") || c == 0x20 || c == 0x09 {
                    state = .sizeExtension; i += 1
                } else {
                    return .error("client sent invalid chunked body")
                }
            case .sizeExtension:
                if c == 0x0D { state = .sizeLF } else if c == 0x0A || c < 0x09 { return .error("client sent invalid chunked body") }
                i += 1
            case .sizeLF:
                guard c == 0x0A else { return .error("client sent invalid chunked body") }
                i += 1
                let (total, overflow) = announced.addingReportingOverflow(size)
                guard !overflow else { return .error("client sent too large chunk size") }
                announced = total
                state = size == 0 ? .trailerLineStart : .data(size)
            case .data(let remaining):
                let take = min(remaining, n - i)
                onData(i..<(i + take))
                i += take
                state = remaining - take == 0 ? .dataCR : .data(remaining - take)
            case .dataCR:
                guard c == 0x0D else { return .error("client sent invalid chunked body") }
                state = .dataLF; i += 1
            case .dataLF:
                guard c == 0x0A else { return .error("client sent invalid chunked body") }
                state = .size; size = 0; sizeDigits = 0; i += 1
            case .trailerLineStart:
                if c == 0x0D { state = .trailerLF; i += 1; continue }
                // A bare LF here ends the body for nginx but would start a trailer line here, swallowing the
                // next pipelined request: refuse it, as bare LFs are refused in size lines.
                if c == 0x0A { return .error("client sent invalid chunked body") }
                state = .trailer
            case .trailer:
                trailerBytes += 1
                guard trailerBytes <= maxTrailerBytes else { return .error("client sent too large chunked trailer") }
                if c == 0x0D { state = .trailerLineLF } else if c == 0x0A { return .error("client sent invalid chunked body") }
                i += 1
            case .trailerLineLF:
                // Trailer lines end in CRLF; a bare CR or LF inside one is refused (nginx refuses the bare CR too).
                guard c == 0x0A else { return .error("client sent invalid chunked body") }
                trailerBytes += 1
                guard trailerBytes <= maxTrailerBytes else { return .error("client sent too large chunked trailer") }
                state = .trailerLineStart; i += 1
            case .trailerLF:
                guard c == 0x0A else { return .error("client sent invalid chunked body") }
                i += 1
                state = .done
                return .end(consumed: i)
            case .done:
                return .end(consumed: i)
            }
        }
        return .data(i..<i)
    }

    @inline(__always) private func hexValue(_ c: UInt8) -> Int? {
        switch c {
        case 0x30...0x39: Int(c - 0x30)
        case 0x41...0x46: Int(c - 0x41 + 10)
        case 0x61...0x66: Int(c - 0x61 + 10)
        default: nil
        }
    }
}
