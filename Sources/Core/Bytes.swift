#if canImport(Glibc)
import Glibc
#endif

extension String {
    /// The String's UTF-8 bytes, borrowed where it keeps them contiguous (copied once where it does not, a
    /// bridged or lazily made string).
    @inlinable public func withUTF8Bytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let r = utf8.withContiguousStorageIfAvailable(body) { return r }
        var copy = self
        return copy.withUTF8(body)
    }
}

extension Array where Element == UInt8 {
    /// A literal's bytes appended as one copy (appending a String's `utf8` view goes byte by byte).
    @inlinable public mutating func append(ascii s: StaticString) {
        s.withUTF8Buffer { append(contentsOf: $0) }
    }

    /// A String's UTF-8 appended as one copy.
    @inlinable public mutating func append(utf8 s: String) {
        s.withUTF8Bytes { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    /// Byte equality (a generic elementsEqual over the bytes or a String's UTF8View showed in profiles).
    @inlinable public func equals(_ other: UnsafeRawBufferPointer) -> Bool {
        count == other.count && (count == 0 || memcmp(baseAddress!, other.baseAddress!, count) == 0)
    }

    /// Byte equality with a literal.
    @inlinable public func equals(_ s: StaticString) -> Bool {
        equals(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
}
