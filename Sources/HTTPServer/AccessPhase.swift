#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// What one access module made of a request (nginx's handler return codes).
enum AccessVerdict {
    /// It has nothing to say here.
    case declined
    case allowed
    /// 401 or 403: final with `satisfy all`, kept while `satisfy any` looks for a module that allows.
    case denied(Int)
    /// An error status, answered whatever `satisfy` says.
    case failed(Int)
    /// It waits for a subrequest: the phase goes on at this module when it has ended.
    case pending
}

/// Where a request's access phase is: the module it goes on at, the 401 or 403 `satisfy any` keeps, the
/// WWW-Authenticate values a 401 is answered with, and auth_request's subrequest once it has ended.
struct AccessProgress {
    var module = 0
    var code = 0
    var challenges: [String] = []
    var authRequest: Subrequest?
}

/// A request waiting on something of its own (a subrequest, auth_delay's timer) rather than on a content
/// handler: when the connection stops the request's handler, that is cancelled.
final class Pause: ActiveHandler {
    private var cancel: (() -> Void)?
    init(_ cancel: @escaping () -> Void) { self.cancel = cancel }
    func abort() {
        cancel?()
        cancel = nil
    }
    var isFinished: Bool { cancel == nil }
}

extension RequestPipeline {
    /// nginx's access phase, its modules in nginx's order: allow/deny, auth_basic, auth_request. With
    /// `satisfy all` the first that denies answers; with `satisfy any` the first that allows lets the request
    /// through, and if none does a 401 wins over a 403. Subrequests skip it, as in nginx.
    func accessPhase(_ r: RequestContext) {
        guard r.parent == nil else { return contentPhases(r) }
        r.access = AccessProgress()
        continueAccess(r)
    }

    /// The access modules from the one the request is at.
    func continueAccess(_ r: RequestContext) {
        let any = r.settings.auth.satisfyAny
        while r.access.module < 3 {
            let verdict: AccessVerdict
            switch r.access.module {
            case 0: verdict = AccessCheck.verdict(r)
            case 1: verdict = AuthBasic.check(r)
            default: verdict = AuthRequest.check(r)
            }
            switch verdict {
            case .pending:
                return
            case .declined, .allowed where !any:
                break
            case .allowed:
                r.access.challenges = []
                return contentPhases(r)
            case .denied(let code) where any:
                if r.access.code != 401 { r.access.code = code }
            case .denied(let code), .failed(let code):
                return deny(r, code)
            }
            r.access.module += 1
        }
        guard r.access.code != 0 else { return contentPhases(r) }
        if r.access.code == 403 { r.log.error("access forbidden by rule\(r.logContext)") }
        deny(r, r.access.code)
    }

    /// The phase's answer: a 401 carries the challenges, after `auth_delay` (on a timer of the loop: the
    /// worker goes on with other requests meanwhile).
    private func deny(_ r: RequestContext, _ code: Int) {
        guard code == 401 else { return respondError(r, code) }
        r.carriedHeaders += r.access.challenges.map { ("WWW-Authenticate", $0) }
        let delay = r.settings.auth.delay
        guard delay > 0 else { return respondError(r, 401) }
        r.log.info("delaying unauthorized request\(r.logContext)")
        let timer = service.loop.schedule(after: UInt64(delay)) { [unowned(unsafe) self, unowned(unsafe) r] in
            r.handler = nil
            self.respondError(r, 401)
        }
        r.handler = Pause(timer.cancel)
    }
}

/// nginx's auth_basic module: the user and password of `Authorization: Basic` against a password file read
/// for each request, as nginx reads it (`user:password[:comment]` lines, `#` comments), in pieces on the stack;
/// a header that matched the file as it still is comes through the worker's CredentialCache instead.
enum AuthBasic {
    static func check(_ r: RequestContext) -> AccessVerdict {
        guard let realmValue = r.settings.auth.basicRealm, let file = r.settings.auth.basicUserFile else { return .declined }
        let realm = realmValue.render(r)
        if realm == "off" { return .declined }
        func challenge() -> AccessVerdict {
            r.access.challenges.append("Basic realm=\"\(realm)\"")
            return .denied(401)
        }
        let path = r.service.config.fullConfPath(file.render(r))
        let header = r.withHeader("authorization", CredentialCache.HeaderDigest.init)
        if let header, let file = r.service.credentials.identity(of: path, iteration: r.service.loop.nowUs),
           r.service.credentials.admits(header, path: path, file: file) {
            return .allowed
        }
        guard let (credentials, colon) = r.withHeader("authorization", Variables.basicCredentials) ?? nil else {
            r.log.info("no user/password was provided for basic authentication\(r.logContext)")
            return challenge()
        }
        let user = credentials[..<colon], password = credentials[(colon + 1)...]
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            // As nginx: a file that is not there is a 403, any other failure a 500.
            let e = errno
            r.log.log(e == ENOENT ? .error : .crit, "open() \"\(path)\" failed (\(Errno.text(e)))\(r.logContext)")
            return e == ENOENT ? .denied(403) : .failed(500)
        }
        defer { close(fd) }
        let outcome = withUnsafeTemporaryAllocation(byteCount: 2048, alignment: 1) { buf -> PasswordLookup in
            // The password's bytes do not stay on the stack, as nginx's explicit memzero.
            defer { memset(buf.baseAddress!, 0, buf.count) }
            return lookUp(user, fd: fd, in: buf) { stored in PasswordHash.matches(password, stored) }
        }
        // Made only for a log line: a request let in allocates no name.
        var name: String { String(decoding: user, as: UTF8.self) }
        switch outcome {
        case .matched(true):
            // The identity of the file as read, not as first seen: it may have been replaced in between.
            if let header, let file = FileIdentity(fd: fd) {
                r.service.credentials.remember(header, path: path, file: file)
            }
            return .allowed
        case .matched(false):
            r.log.error("user \"\(name)\": password mismatch\(r.logContext)")
            return challenge()
        case .notFound:
            r.log.error("user \"\(name)\" was not found in \"\(path)\"\(r.logContext)")
            return challenge()
        case .matched(nil):
            r.log.log(.crit, "crypt_r() failed (\(Errno.text(errno)))\(r.logContext)")
            return .failed(500)
        case .readFailed(let e):
            r.log.log(.crit, "pread() \"\(path)\" failed (\(Errno.text(e)))\(r.logContext)")
            return .failed(500)
        }
    }

    enum PasswordLookup {
        /// The user's line was found: whether its password matched (nil: the hash could not be computed).
        case matched(Bool?)
        case notFound
        case readFailed(Int32)
    }

    /// nginx's scan of a password file: `user` at the start of a line, up to a ":"; the password after it up to
    /// a newline or ":" (or the end of the file); `#` and CR at a line's start make it a comment. Read in
    /// `buf`-sized pieces, a password cut by a piece's end moved to the buffer's start.
    static func lookUp(_ user: ArraySlice<UInt8>, fd: Int32, in buf: UnsafeMutableRawBufferPointer,
                       _ check: (UnsafeRawBufferPointer) -> Bool?) -> PasswordLookup {
        enum State { case login, password, skip }
        var state = State.login
        var login = 0, passwordStart = 0, left = 0, offset = 0
        let lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r"), colon = UInt8(ascii: ":")
        while true {
            let n = pread(fd, buf.baseAddress! + left, buf.count - left, off_t(offset))
            if n < 0 { return .readFailed(errno) }
            if n == 0 { break }
            for i in left..<(left + n) {
                let b = buf[i]
                switch state {
                case .login:
                    if login == 0 && (b == UInt8(ascii: "#") || b == cr) {
                        state = .skip
                    } else if login == 0 && b == lf {
                        break
                    } else if b != (login < user.count ? user[user.startIndex + login] : colon) {
                        state = .skip
                    } else {
                        if login == user.count {
                            state = .password
                            passwordStart = i + 1
                        }
                        login += 1
                    }
                case .password:
                    if b == lf || b == cr || b == colon {
                        return .matched(check(UnsafeRawBufferPointer(rebasing: buf[passwordStart..<i])))
                    }
                case .skip:
                    if b == lf {
                        state = .login
                        login = 0
                    }
                }
            }
            if state == .password {
                left += n - passwordStart
                memmove(buf.baseAddress!, buf.baseAddress! + passwordStart, left)
                passwordStart = 0
            } else {
                left = 0
            }
            offset += n
        }
        guard state == .password else { return .notFound }
        return .matched(check(UnsafeRawBufferPointer(rebasing: buf[passwordStart..<left])))
    }
}

/// nginx's auth_request module: a subrequest to `auth_request`'s URI decides. 2xx allows, 401 (with the
/// subrequest's WWW-Authenticate) and 403 deny, anything else is a 500; `auth_request_set` takes values of
/// the subrequest's variables (`$upstream_http_*`) into the request's, whatever the status.
enum AuthRequest {
    static func check(_ r: RequestContext) -> AccessVerdict {
        guard let uri = r.settings.auth.request else { return .declined }
        guard let sub = r.access.authRequest else {
            let sub = Subrequest.start(r, uri: uri) { [unowned(unsafe) r] _ in
                r.handler = nil
                r.service.pipeline.continueAccess(r)
            }
            r.access.authRequest = sub
            r.handler = Pause(sub.cancel)
            return .pending
        }
        r.access.authRequest = nil
        for set in r.settings.auth.requestSets { r.assign(set.variable, set.value.render(sub.request)) }
        switch sub.status {
        case 200..<300:
            return .allowed
        case 401:
            r.access.challenges += Variables.fields("www-authenticate", inHead: sub.head)
            return .denied(401)
        case 403:
            return .denied(403)
        default:
            r.log.error("auth request unexpected status: \(sub.status)\(r.logContext)")
            return .failed(500)
        }
    }
}
