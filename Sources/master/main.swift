#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import TLS
import Worker

/// `vigil`: nginx's command line in front of the master process.
func stderrLine(_ s: String) { writeAll(2, "vigil: \(s)\n") }

/// Descriptors we were started with beyond stdio; a daemon closes them so that whoever started it
/// (a shell, a test harness watching a socketpair) sees it detach.
let inheritedDescriptors: [Int32] = {
    guard let dir = opendir("/proc/self/fd") else { return [] }
    defer { closedir(dir) }
    let own = dirfd(dir)
    var fds: [Int32] = []
    while let ent = readdir(dir) {
        let name = withUnsafeBytes(of: ent.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if let fd = Int32(name), fd > 2, fd != own { fds.append(fd) }
    }
    return fds
}()

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch let e as Options.Invalid {
    stderrLine(e.message)
    exit(1)
}

if options.help || options.version || options.versionAndConfigure {
    writeAll(2, "vigil version: \(Version.serverToken)\n")
    if options.help { writeAll(2, Options.usage) }
    if options.versionAndConfigure {
        writeAll(2, "built with Swift, Linux epoll, POSIX shared memory\nconfigure arguments: --prefix=\(options.resolvedPrefix) --conf-path=\(options.resolvedConfFile) --with-http_ssl_module --with-http_v2_module --with-http_realip_module --with-http_gzip_static_module --with-http_auth_request_module --with-http_stub_status_module --with-debug\n")
    }
    if !options.test { exit(0) }
}

/// Loads the configuration and its certificates (for `-s` too, as nginx does) or prints nginx's two-line
/// failure and exits 1.
func loadOrExit(testing: Bool) -> (Configuration, TLSBundle) {
    let file = options.resolvedConfFile
    do {
        let conf = try Configuration.load(file: file, prefix: options.resolvedPrefix, globalDirectives: options.globalDirectives)
        for w in conf.warnings { stderrLine("[warn] \(w)") }
        if testing && !options.quiet { for n in conf.notices { stderrLine("[notice] \(n)") } }
        return (conf, try TLSBundle(config: conf))
    } catch let e as ConfigError {
        stderrLine("[\(e.level.rawValue)] \(e)")
        if testing { stderrLine("configuration file \(file) test failed") }
        logSignalFailure("\(e)")
        exit(1)
    } catch {
        stderrLine("[emerg] \(error)")
        logSignalFailure("\(error)")
        exit(1)
    }
}

/// nginx writes why `-s reload` (or stop…) refused the configuration to the error log as well, so an operator
/// who tails the log sees why a reload did nothing: the log it has before any configuration, `-e` or
/// logs/error.log under the prefix.
func logSignalFailure(_ message: String) {
    guard options.signal != nil else { return }
    let log = ErrorLog()
    let path = options.resolvedErrorLog ?? options.resolvedPrefix + "/logs/error.log"
    guard path != "stderr", (try? log.open([ErrorLogTarget(path: path, level: .emerg)])) != nil else { return }
    log.emerg(message)
}

if options.test {
    let (conf, _) = loadOrExit(testing: true)
    let file = options.resolvedConfFile
    if !options.quiet { stderrLine("the configuration file \(file) syntax is ok") }
    if let err = SegmentPlan(config: conf).fitError {
        stderrLine("[emerg] \(err)")
        stderrLine("configuration file \(file) test failed")
        exit(1)
    }
    if !options.quiet { stderrLine("configuration file \(file) test is successful") }
    if options.testAndDump { writeAll(1, conf.dump()) }
    exit(0)
}

if let name = options.signal {
    let (conf, _) = loadOrExit(testing: false)
    let signals: [String: Int32] = ["stop": SIGTERM, "quit": SIGQUIT, "reopen": SIGUSR1, "reload": SIGHUP]
    do {
        let pid = try PidFile.read(conf.pidPath)
        if kill(pid, signals[name]!) != 0 {
            stderrLine("[alert] kill(\(pid), \(signals[name]!)) failed (\(Errno.text(errno)))")
            exit(1)
        }
        exit(0)
    } catch {
        stderrLine("[error] \(error)")
        exit(1)
    }
}

let (conf, tls) = loadOrExit(testing: false)
exit(Master(options: options, config: conf, tls: tls, inheritedDescriptors: inheritedDescriptors).run())
