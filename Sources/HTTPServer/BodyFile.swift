#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// A request body in a file under client_body_temp_path: past client_body_buffer_size, or any body with
/// client_body_in_file_only. Otherwise the file is unlinked as soon as it is made, so nothing is left behind by
/// a worker that dies; the descriptor closes with it. client_body_in_file_only keeps the file for the request
/// (`clean`: removed when the request lets go of it) or for good (`on`), as nginx does.
public final class BodyFile {
    let fd: Int32
    public let path: String
    public private(set) var size = 0
    private let removeWhenDone: Bool

    private init(fd: Int32, path: String, removeWhenDone: Bool) {
        self.fd = fd
        self.path = path
        self.removeWhenDone = removeWhenDone
    }

    deinit {
        close(fd)
        if removeWhenDone { unlink(path) }
    }

    enum Created { case success(BodyFile), failure(String) }

    /// nginx's temp file names: ten digits, from a per-worker sequence that starts at the worker's pid. The
    /// master made the directory, owned by the workers' user.
    static func create(in directory: String, keep: BodyInFileOnly, service: HTTPService) -> Created {
        while true {
            service.tempFileSerial &+= 1
            let name = String(service.tempFileSerial % 10_000_000_000)
            let path = directory + "/" + String(repeating: "0", count: max(0, 10 - name.count)) + name
            let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 {
                if keep == .off { unlink(path) }
                return .success(BodyFile(fd: fd, path: path, removeWhenDone: keep == .clean))
            }
            if errno != EEXIST { return .failure("open() \"\(path)\" failed (\(Errno.text(errno)))") }
        }
    }

    /// Appends `bytes`; nil, or the errno of a failed write (a full disk).
    func append(_ bytes: [UInt8]) -> Int32? {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(size + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        size += done
        return nil
    }

    /// Up to `count` bytes from `offset`, written to `out`; the number read (0 at the end, -1 on an error).
    public func read(at offset: Int, count: Int, into out: UnsafeMutableRawPointer) -> Int {
        pread(fd, out, count, off_t(offset))
    }
}
