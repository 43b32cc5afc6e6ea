#if canImport(Glibc)
import Glibc
#endif

/// nginx's command line: `[-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename] [-g directives]`.
struct Options {
    var help = false
    var version = false
    var versionAndConfigure = false
    var test = false
    var testAndDump = false
    var quiet = false
    var signal: String?
    var prefix: String?
    var errorLog: String?
    var confFile: String?
    var globalDirectives: String?

    static let usage = """
        Usage: vigil [-?hvVtTq] [-s signal] [-p prefix]
                     [-e filename] [-c filename] [-g directives]

        Options:
          -?,-h         : this help
          -v            : show version and exit
          -V            : show version and configure options then exit
          -t            : test configuration and exit
          -T            : test configuration, dump it and exit
          -q            : suppress non-error messages during configuration testing
          -s signal     : send signal to a master process: stop, quit, reopen, reload
          -p prefix     : set prefix path (default: the current directory)
          -e filename   : set error log file (default: logs/error.log)
          -c filename   : set configuration file (default: conf/vigil.conf)
          -g directives : set global directives out of configuration file

        """

    struct Invalid: Error { let message: String }

    /// Parses like nginx: flags combine (`-tq`), values attach or follow (`-cfile`, `-c file`).
    static func parse(_ args: [String]) throws -> Options {
        var o = Options()
        var i = 0
        while i < args.count {
            let arg = args[i]
            guard arg.hasPrefix("-"), arg.count > 1 else { throw Invalid(message: "invalid option: \"\(arg)\"") }
            var chars = Array(arg.dropFirst())
            while !chars.isEmpty {
                let c = chars.removeFirst()
                func value(_ what: String) throws -> String {
                    if !chars.isEmpty { let v = String(chars); chars = []; return v }
                    i += 1
                    guard i < args.count else { throw Invalid(message: "option \"-\(c)\" requires \(what)") }
                    return args[i]
                }
                switch c {
                case "?", "h": o.help = true
                case "v": o.version = true
                case "V": o.versionAndConfigure = true
                case "t": o.test = true
                case "T": o.test = true; o.testAndDump = true
                case "q": o.quiet = true
                case "p": o.prefix = try value("directory name")
                case "e": o.errorLog = try value("file name")
                case "c": o.confFile = try value("file name")
                case "g": o.globalDirectives = try value("parameter")
                case "s":
                    let s = try value("parameter")
                    guard ["stop", "quit", "reopen", "reload"].contains(s) else { throw Invalid(message: "invalid option: \"-s \(s)\"") }
                    o.signal = s
                default:
                    throw Invalid(message: "invalid option: \"\(String(c))\"")
                }
            }
            i += 1
        }
        return o
    }

    /// The prefix as an absolute directory; nginx's compiled-in default becomes the current directory.
    var resolvedPrefix: String {
        let cwd = currentDirectory()
        guard var p = prefix, !p.isEmpty else { return cwd }
        if !p.hasPrefix("/") { p = cwd + "/" + p }
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    var resolvedConfFile: String {
        let f = confFile ?? "conf/vigil.conf"
        return f.hasPrefix("/") ? f : resolvedPrefix + "/" + f
    }

    /// `-e`: "stderr" or a path relative to the prefix.
    var resolvedErrorLog: String? {
        guard let e = errorLog else { return nil }
        return e == "stderr" || e.hasPrefix("/") ? e : resolvedPrefix + "/" + e
    }
}

func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buf, buf.count) != nil else { return "." }
    return String(cString: buf)
}
