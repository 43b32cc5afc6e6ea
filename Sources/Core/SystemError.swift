#if canImport(Glibc)
import Glibc
#endif

/// The one place an errno becomes text, as nginx prints it: `111: Connection refused`.
public enum Errno {
    public static func text(_ e: Int32) -> String { "\(e): \(String(cString: strerror(e)))" }
}

/// A failed system call, worded like nginx: `bind() to 127.0.0.1:80 failed (98: Address already in use)`.
public struct SystemError: Error, CustomStringConvertible {
    public let call: String
    public let errno: Int32
    public init(_ call: String, errno e: Int32 = Glibc.errno) { self.call = call; self.errno = e }
    public var description: String { "\(call) failed (\(Errno.text(errno)))" }
}

/// `open() "path" failed (2: No such file or directory)`, nginx's wording for any file it cannot open.
public struct OpenFailure: Error, CustomStringConvertible {
    public let path: String
    public let errno: Int32
    public init(path: String, errno: Int32) { self.path = path; self.errno = errno }
    public var description: String { "open() \"\(path)\" failed (\(Errno.text(errno)))" }
}
