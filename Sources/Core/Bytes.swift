extension Array where Element == UInt8 {
    /// A literal's bytes appended as one copy (appending a String's `utf8` view goes byte by byte).
    @inlinable public mutating func append(ascii s: StaticString) {
        s.withUTF8Buffer { append(contentsOf: $0) }
    }

    /// A String's UTF-8 appended as one copy.
    @inlinable public mutating func append(utf8 s: String) {
        if let done: Void = s.utf8.withContiguousStorageIfAvailable({ append(contentsOf: $0) }) { return done }
        var copy = s
        copy.withUTF8 { append(contentsOf: $0) }
    }
}
