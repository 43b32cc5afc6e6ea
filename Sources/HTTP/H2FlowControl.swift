/// A window we send against (RFC 9113 §6.9): the peer's, for the connection or a stream. It shrinks as DATA
/// goes, grows by WINDOW_UPDATE, and moves by the difference when SETTINGS_INITIAL_WINDOW_SIZE changes
/// (which may leave it negative, §6.9.2); it may never pass 2^31-1.
public struct H2SendWindow: Equatable, Sendable {
    public private(set) var value: Int

    public init(_ value: Int) { self.value = value }

    /// WINDOW_UPDATE's increment or a SETTINGS change; false (nothing changed) past 2^31-1: a FLOW_CONTROL_ERROR.
    public mutating func grow(by n: Int) -> Bool {
        guard n <= H2.maxWindow - value else { return false }
        value += n
        return true
    }

    /// DATA sent: at most `value` bytes.
    public mutating func take(_ n: Int) {
        precondition(n <= value, "HTTP/2: DATA past the peer's window")
        value -= n
    }
}

/// A window the peer sends against: what it may still send on the connection or a stream, and how much of
/// what it sent has been consumed since the last WINDOW_UPDATE. The window opens again as the receiver
/// consumes (not as bytes arrive), once half the initial window is consumed, as nghttp2 opened it.
public struct H2ReceiveWindow: Equatable, Sendable {
    public let initial: Int
    public private(set) var available: Int
    public private(set) var consumed = 0

    public init(_ initial: Int) {
        self.initial = initial
        available = initial
    }

    /// A DATA frame of `n` bytes (padding included) arrives; false (nothing changed) if it does not fit: the
    /// sender violated flow control.
    public mutating func receive(_ n: Int) -> Bool {
        guard n <= available else { return false }
        available -= n
        return true
    }

    /// `n` received bytes were consumed; returns the increment a WINDOW_UPDATE must give now, if one is due.
    public mutating func consume(_ n: Int) -> Int? {
        consumed += n
        guard consumed > 0 && consumed >= initial / 2 else { return nil }
        let increment = min(consumed, H2.maxWindow - available)
        consumed = 0
        guard increment > 0 else { return nil }
        available += increment
        return increment
    }
}
