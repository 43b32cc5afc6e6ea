#if canImport(Glibc)
import Glibc
#endif
import Core

/// `user name [group]`: who the workers run as once the master (root, for ports below 1024) has forked them.
/// Looked up when the configuration loads, so that `-t` reports an unknown name as nginx does.
public struct WorkerUser: Sendable, Equatable {
    public let name: String
    public let uid: uid_t
    public let gid: gid_t

    /// nginx's default on Debian: `nobody`, in the group `nobody` where one exists, else `nogroup`.
    static let defaultName = "nobody"
    static var defaultGroup: String { getgrnam("nobody") != nil ? "nobody" : "nogroup" }

    /// The user and group by name; the error is nginx's (`getpwnam("x") failed`), with errno when the lookup set one.
    static func lookUp(user: String, group: String) -> Result<WorkerUser, LookupFailure> {
        errno = 0
        guard let pw = getpwnam(user) else { return .failure(LookupFailure(call: "getpwnam", name: user, errno: errno)) }
        let uid = pw.pointee.pw_uid
        errno = 0
        guard let gr = getgrnam(group) else { return .failure(LookupFailure(call: "getgrnam", name: group, errno: errno)) }
        return .success(WorkerUser(name: user, uid: uid, gid: gr.pointee.gr_gid))
    }

    struct LookupFailure: Error {
        let call: String
        let name: String
        let errno: Int32
        var message: String {
            "\(call)(\"\(name)\") failed" + (errno == 0 ? "" : " (\(Errno.text(errno)))")
        }
    }

    /// Only root can change to another user; nginx then ignores `user` with a warning.
    static var masterIsRoot: Bool { geteuid() == 0 }
}
