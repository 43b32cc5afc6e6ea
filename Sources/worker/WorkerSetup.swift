#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import CShim

/// What a worker does to itself before it handles anything, in nginx's order: resource limits, the identity
/// of `user` when the master is root (groups, gid, then uid), no way back, then the working directory. A
/// failure that would leave the worker with more than it should have is fatal: it exits with
/// `fatalWorkerExitCode` and the master does not respawn it.
enum WorkerSetup {
    static func apply(_ config: Configuration, log: ErrorLog) {
        setLimit(RLIMIT_NOFILE, "RLIMIT_NOFILE", config.workerRlimitNofile, log: log)
        setLimit(RLIMIT_CORE, "RLIMIT_CORE", config.workerRlimitCore, log: log)
        if let user = config.workerUser, geteuid() == 0 { become(user, log: log) }
        // The worker executes nothing; this makes it a rule that nothing it could execute grants privileges.
        if vigil_set_no_new_privs() != 0 { log.alert("prctl(PR_SET_NO_NEW_PRIVS) failed (\(Errno.text(errno)))") }
        // Changing uid made the worker undumpable: no core file, and no ptrace by other processes of `user`.
        // An operator who asks for cores (a limit or a directory for them) gets them back, as nginx always does.
        if config.workerRlimitCore != nil || config.workingDirectory != nil, vigil_set_dumpable(1) != 0 {
            log.alert("prctl(PR_SET_DUMPABLE) failed (\(Errno.text(errno)))")
        }
        if let dir = config.workingDirectory, chdir(dir) != 0 {
            log.alert("chdir(\"\(dir)\") failed (\(Errno.text(errno)))")
            exit(fatalWorkerExitCode)
        }
    }

    private static func setLimit(_ resource: __rlimit_resource, _ name: String, _ value: Int?, log: ErrorLog) {
        guard let value else { return }
        var rl = rlimit(rlim_cur: rlim_t(value), rlim_max: rlim_t(value))
        if setrlimit(Int32(resource.rawValue), &rl) != 0 { log.alert("setrlimit(\(name), \(value)) failed (\(Errno.text(errno)))") }
    }

    /// nginx keeps root's supplementary groups when initgroups() fails; a worker here does not start instead.
    private static func become(_ user: WorkerUser, log: ErrorLog) {
        func fatal(_ call: String) -> Never {
            log.emerg("\(call) failed (\(Errno.text(errno)))")
            exit(fatalWorkerExitCode)
        }
        if setgid(user.gid) != 0 { fatal("setgid(\(user.gid))") }
        if initgroups(user.name, user.gid) != 0 { fatal("initgroups(\(user.name), \(user.gid))") }
        if setuid(user.uid) != 0 { fatal("setuid(\(user.uid))") }
        if user.uid != 0 && setuid(0) == 0 {
            log.emerg("setuid(0) succeeded after setuid(\(user.uid)): the worker could regain root")
            exit(fatalWorkerExitCode)
        }
    }
}
