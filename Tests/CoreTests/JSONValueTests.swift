import XCTest
@testable import Core

/// The JSON reader for documents from outside (etcd replies and values, upstream API bodies): RFC 8259's
/// grammar exactly, every error a nil, nesting bounded.
final class JSONValueTests: XCTestCase {
    func testReadsEveryKindOfValue() throws {
        let doc = try XCTUnwrap(JSONValue.parse(#" {"weight": 2, "max_fails":0, "fail_timeout": 1.5e1, "down": false, "backup": true, "#
                                              + #""tags": ["a", null, -0.25], "name": "caf\u00e9 \ud83d\ude00 \"q\"\n", "empty": {}} "#))
        XCTAssertEqual(doc["weight"]?.integer, 2)
        XCTAssertEqual(doc["max_fails"]?.integer, 0)
        XCTAssertEqual(doc["fail_timeout"]?.integer, 15)
        XCTAssertEqual(doc["down"]?.bool, false)
        XCTAssertEqual(doc["backup"]?.bool, true)
        XCTAssertEqual(doc["tags"], .array([.string("a"), .null, .number(-0.25)]))
        XCTAssertEqual(doc["name"]?.string, "café 😀 \"q\"\n")
        XCTAssertEqual(doc["empty"], .object([]))
        XCTAssertNil(doc["missing"])
        XCTAssertNil(doc["tags"]?.integer)
        XCTAssertEqual(JSONValue.parse("[]"), .array([]))
        XCTAssertEqual(JSONValue.parse(" 0 "), .number(0))
        XCTAssertEqual(JSONValue.parse(#"{"a":1,"a":2}"#)?["a"]?.integer, 2)
        XCTAssertNil(JSONValue.parse("1.5")?.integer)
    }

    func testRefusesWhatIsNotJSON() {
        let bad = ["", " ", "{", "}", "[1,]", "{\"a\":1,}", "{a:1}", "{'a':1}", "01", "1.", ".5", "+1", "1e", "--1",
                   "tru", "nul", "[1] [2]", "\"unterminated", "\"tab\there\"", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"",
                   "\"\\ud800\\u0041\"", "{\"a\" 1}", "[1 2]", "NaN", "Infinity", "\"\\u00zz\""]
        for text in bad { XCTAssertNil(JSONValue.parse(text), text) }
        XCTAssertNil(JSONValue.parse([0x22, 0xFF, 0x22]), "bad UTF-8")
        XCTAssertNil(JSONValue.parse([0x22, 0x10, 0x22]), "a control character")
    }

    func testBoundsNestingAndSurvivesGarbage() {
        let deep = String(repeating: "[", count: JSONValue.maxDepth) + String(repeating: "]", count: JSONValue.maxDepth)
        XCTAssertNotNil(JSONValue.parse(deep))
        XCTAssertNil(JSONValue.parse("[" + deep + "]"))
        XCTAssertNil(JSONValue.parse(String(repeating: "[", count: 100_000)))
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[]":,.-+eE0123456789 truefalsnul\u"#.utf8)
        for _ in 0..<5000 {
            let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in
                Bool.random(using: &rng) ? alphabet.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            }
            _ = JSONValue.parse(bytes)
        }
    }
}
