import Foundation
import XCTest
@testable import Config
import Script
#if canImport(Glibc)
import Glibc
#endif

/// A test double of the request a script runs on (the real one is HTTPServer's RequestContext): built-in
/// variables from a list, the configuration's own variables (with `map`s evaluated on first read and kept,
/// unless volatile, as the real request does), the URI and arguments, and the `if` blocks selected.
final class TestContext: ScriptContext {
    var uri: String
    var args: String?
    var captures: Captures?
    var uriWasQuoted = false
    /// Built-in variables' values (`.httpHeader("user-agent")`, `.remoteAddr`, …).
    var builtins: [(Variable, String)] = []
    private(set) var user: [Int: String] = [:]
    /// `select(ifBlock:)` calls, in order.
    private(set) var selected: [Int] = []
    let table: VariableTable?

    init(uri: String = "/", args: String? = nil, table: VariableTable? = nil) {
        self.uri = uri
        self.args = args
        self.table = table
    }

    func value(_ v: Variable) -> String? {
        switch v {
        case .uri: return uri
        case .args: return args
        case .isArgs: return args == nil ? "" : "?"
        case .capture(let n): return captures?.group(n)
        case .user(let i):
            if let s = user[i] { return s }
            guard let map = table?.maps[i] else { return nil }
            let value = map.evaluate(self)
            if !map.volatile { user[i] = value }
            return value
        default:
            return builtins.first(where: { $0.0 == v })?.1
        }
    }

    func setUser(_ index: Int, _ value: String) { user[index] = value }

    func setBuiltin(_ v: Variable, _ value: String) { set(v, value) }

    func select(ifBlock: Int) { selected.append(ifBlock) }

    /// The value of the configuration variable `name` (nil: never set, or not declared).
    func user(_ name: String) -> String? {
        guard let i = table?.index(of: name) else { return nil }
        return value(.user(i))
    }

    func set(_ v: Variable, _ value: String) { builtins.append((v, value)) }
}

/// A template whose names are resolved (built-ins, and the table's variables when given).
func template(_ text: String, _ table: VariableTable = VariableTable()) -> Template {
    let t = Template(text)
    t.resolve(table)
    return t
}

/// A parsed configuration with one server and `location / { body }` (plus `http` directives before it).
struct LoadedScript {
    let config: Configuration
    var http: HTTPBlock { config.http! }
    var server: Server { http.servers[0] }
    var location: Location { server.locations[0] }
    var table: VariableTable { http.variables }

    func context(uri: String = "/", args: String? = nil) -> TestContext {
        TestContext(uri: uri, args: args, table: table)
    }

    /// Runs the location's program on a fresh request for `uri`.
    func run(uri: String, args: String? = nil, _ prepare: (TestContext) -> Void = { _ in }) -> (Program.Outcome, TestContext) {
        let ctx = context(uri: uri, args: args)
        prepare(ctx)
        return (location.script.run(ctx), ctx)
    }
}

func load(location body: String, http: String = "", file: StaticString = #filePath, line: UInt = #line) throws -> LoadedScript {
    let text = "events {}\nhttp {\naccess_log off;\n\(http)\nserver {\nlisten 127.0.0.1:8080;\nlocation / {\n\(body)\n}\n}\n}\n"
    do {
        return LoadedScript(config: try Configuration.parse(text: text))
    } catch {
        XCTFail("the configuration did not load: \(error)\n\(text)", file: file, line: line)
        throw error
    }
}

/// A fresh directory under the system temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    var template = Array((NSTemporaryDirectory() + "/vigil-scripttests.XXXXXX").utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw NSError(domain: "mkdtemp", code: Int(errno))
    }
    // Resolved, so the paths the test builds are the ones stat() sees.
    let path = URL(fileURLWithPath: String(cString: p)).resolvingSymlinksInPath().path
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}
