import XCTest
@testable import Config

/// nginx's tokenizer: words, quotes, escapes, comments, terminators, line numbers.
final class LexerTests: XCTestCase {
    private struct Stmt: Equatable {
        var words: [String]
        var terminator: Lexer.Terminator
        var line: Int
    }

    /// Every statement up to and including the end of input.
    private func statements(_ text: String, isParameterString: Bool = false) throws -> [Stmt] {
        var lexer = Lexer(bytes: Array(text.utf8), file: "t.conf", isParameterString: isParameterString)
        var out: [Stmt] = []
        while true {
            let s = try lexer.next()
            out.append(Stmt(words: s.words, terminator: s.terminator, line: s.line))
            if s.terminator == .endOfInput || out.count > 100 { return out }
        }
    }

    private func words(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        do {
            let all = try statements(text)
            XCTAssertGreaterThanOrEqual(all.count, 1, file: file, line: line)
            return all.first?.words ?? []
        } catch {
            XCTFail("lexer failed: \(error)", file: file, line: line)
            return []
        }
    }

    private func lexError(_ text: String, isParameterString: Bool = false,
                          file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            _ = try statements(text, isParameterString: isParameterString)
            XCTFail("expected a lexer error", file: file, line: line)
        } catch let e as ConfigError {
            return e
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
        return nil
    }

    // MARK: words and terminators

    func testStatementsTerminatorsAndLines() throws {
        let s = try statements("a b;\nc {\n}\n")
        XCTAssertEqual(s, [
            Stmt(words: ["a", "b"], terminator: .semicolon, line: 1),
            Stmt(words: ["c"], terminator: .blockStart, line: 2),
            Stmt(words: [], terminator: .blockEnd, line: 3),
            Stmt(words: [], terminator: .endOfInput, line: 4),
        ])
    }

    func testTerminatorsNeedNoSpace() throws {
        XCTAssertEqual(try statements("a b;c{}"), [
            Stmt(words: ["a", "b"], terminator: .semicolon, line: 1),
            Stmt(words: ["c"], terminator: .blockStart, line: 1),
            Stmt(words: [], terminator: .blockEnd, line: 1),
            Stmt(words: [], terminator: .endOfInput, line: 1),
        ])
    }

    func testMultiLineStatementIsReportedAtItsTerminator() throws {
        let s = try statements("a\n  b\n\n  c;\n")
        XCTAssertEqual(s.first, Stmt(words: ["a", "b", "c"], terminator: .semicolon, line: 4))
    }

    func testWhitespaceKindsSeparateWords() {
        XCTAssertEqual(words("a\tb\r\nc  d;"), ["a", "b", "c", "d"])
    }

    func testCRLFLineEndingsCountLines() throws {
        let s = try statements("a;\r\nb;\r\n")
        XCTAssertEqual(s.map(\.line), [1, 2, 3])
        XCTAssertEqual(s.map(\.words), [["a"], ["b"], []])
    }

    // MARK: quotes

    func testDoubleAndSingleQuotes() {
        XCTAssertEqual(words(#"a "b c" 'd e' "" '';"#), ["a", "b c", "d e", "", ""])
    }

    func testQuotesKeepTheOtherQuoteAndSpecials() {
        XCTAssertEqual(words(#"a "it's" 'say "hi"' "x;y{z}#w";"#), ["a", "it's", #"say "hi""#, "x;y{z}#w"])
    }

    func testQuotedWordMaySpanLines() throws {
        let s = try statements("a \"x\ny\";\nb;")
        XCTAssertEqual(s[0], Stmt(words: ["a", "x\ny"], terminator: .semicolon, line: 2))
        XCTAssertEqual(s[1], Stmt(words: ["b"], terminator: .semicolon, line: 3))
    }

    func testQuoteInsideAnUnquotedWordIsLiteral() {
        XCTAssertEqual(words(#"a b"c d;"#), ["a", #"b"c"#, "d"])
    }

    func testClosingParenthesisMayFollowAQuote() {
        // nginx allows `)` right after a closing quote (for `if ($a = "b")`): it starts the next word.
        XCTAssertEqual(words(#"if "b");"#), ["if", "b", ")"])
    }

    func testQuoteMustBeFollowedBySpaceOrTerminator() {
        let e = lexError(#"a "b"c;"#)
        XCTAssertEqual(e?.description, #"unexpected "c" in t.conf:1"#)
        XCTAssertEqual(lexError("a\n'b'x;")?.description, #"unexpected "x" in t.conf:2"#)
        XCTAssertEqual(lexError(#"a "b"}"#)?.description, #"unexpected "}" in t.conf:1"#)
        XCTAssertEqual(lexError("a \"b\"\u{1};")?.description, #"unexpected "\x1" in t.conf:1"#)
    }

    // MARK: escapes

    func testEscapesAreUnescapedLikeNginx() {
        // \r \n \t become control characters; \" \' \\ the character itself; any other backslash stays.
        XCTAssertEqual(words(#"x "a\r\n\tb" "q\"q" 's\'s' "b\\s" "\x" "\$v" "\'";"#),
                       ["x", "a\r\n\tb", "q\"q", "s's", "b\\s", "\\x", "\\$v", "'"])
    }

    func testEscapesApplyToUnquotedWordsToo() {
        XCTAssertEqual(words(#"x a\tb c\"d e\\f g\q;"#), ["x", "a\tb", "c\"d", "e\\f", "g\\q"])
    }

    func testBackslashProtectsTheNextCharacterButStaysInTheWord() {
        // The escaped space or semicolon does not split or end the word; nginx keeps the backslash.
        XCTAssertEqual(words(#"x a\ b c\;d;"#), ["x", #"a\ b"#, #"c\;d"#])
        XCTAssertEqual(words(#"x "a\"b";"#), ["x", #"a"b"#])
    }

    func testHTTPSendPayloadBytes() {
        let w = words(#"check_http_send "GET / HTTP/1.0\r\n\r\n";"#)
        XCTAssertEqual(w.last.map { Array($0.utf8) }, Array("GET / HTTP/1.0\r\n\r\n".utf8))
        XCTAssertEqual(w.last?.utf8.count, 18)
    }

    // MARK: comments and variables

    func testSharpStartsACommentOnlyAtTheStartOfAWord() throws {
        let s = try statements("a#b c; # comment ; { }\nd \"#e\" '#f';\n#last")
        XCTAssertEqual(s.map(\.words), [["a#b", "c"], ["d", "#e", "#f"], []])
        XCTAssertEqual(s.map(\.line), [1, 2, 3])
    }

    func testCommentInsideAStatement() {
        XCTAssertEqual(words("a # note\n b;"), ["a", "b"])
    }

    func testVariableBracesDoNotOpenABlock() throws {
        let s = try statements("return 200 ${host}x;")
        XCTAssertEqual(s.first, Stmt(words: ["return", "200", "${host}x"], terminator: .semicolon, line: 1))
        // Without `$` the brace opens a block.
        XCTAssertEqual(try statements("a{").first, Stmt(words: ["a"], terminator: .blockStart, line: 1))
    }

    func testUTF8WordsSurvive() {
        XCTAssertEqual(words("server_name 例子.测试 \"健康\";"), ["server_name", "例子.测试", "健康"])
    }

    // MARK: errors

    func testSemicolonOrBraceWithoutAWord() {
        XCTAssertEqual(lexError(";")?.description, #"unexpected ";" in t.conf:1"#)
        XCTAssertEqual(lexError("a;\n\n ;")?.description, #"unexpected ";" in t.conf:3"#)
        XCTAssertEqual(lexError("a;\n{")?.description, #"unexpected "{" in t.conf:2"#)
    }

    func testClosingBraceAfterWords() {
        XCTAssertEqual(lexError("a {\nb }")?.description, #"unexpected "}" in t.conf:2"#)
    }

    func testEndOfFileInsideAStatement() {
        XCTAssertEqual(lexError("a")?.description, #"unexpected end of file, expecting ";" or "}" in t.conf:1"#)
        XCTAssertEqual(lexError("a b\n")?.description, #"unexpected end of file, expecting ";" or "}" in t.conf:2"#)
        XCTAssertEqual(lexError("a \"open\nquote")?.description, #"unexpected end of file, expecting ";" or "}" in t.conf:2"#)
        XCTAssertEqual(lexError("a \\")?.description, #"unexpected end of file, expecting ";" or "}" in t.conf:1"#)
    }

    func testEndOfParameterString() {
        XCTAssertEqual(lexError("daemon off", isParameterString: true)?.message, #"unexpected end of parameter, expecting ";""#)
    }

    func testEmptyAndCommentOnlyInput() throws {
        XCTAssertEqual(try statements(""), [Stmt(words: [], terminator: .endOfInput, line: 1)])
        XCTAssertEqual(try statements("# only\n# comments"), [Stmt(words: [], terminator: .endOfInput, line: 2)])
    }

    // MARK: through the parser

    func testUnclosedBlockAtEndOfFile() {
        assertError("events {\n", #"unexpected end of file, expecting "}""#, line: 2)
        assertError("events {}\nhttp {\nserver {\n}", #"unexpected end of file, expecting "}""#, line: 4)
    }

    func testUnexpectedClosingBraceAtTopLevel() {
        assertError("events {}\n}\n", #"unexpected "}""#, line: 2)
    }

    func testUnexpectedOpeningBrace() {
        assertError("events {}\n{\n}", #"unexpected "{""#, line: 2)
        assertError(inHTTP("types {\ntext/html html {\n}\n}"), #"unexpected "{""#, line: 4)
    }

    func testUnexpectedSemicolon() {
        assertError("events {}\n;", #"unexpected ";""#, line: 2)
        assertError("events {};", #"unexpected ";""#, line: 1)
    }

    func testUnexpectedEndOfFileExpectingSemicolon() {
        assertError("events {}\nhttp", #"unexpected end of file, expecting ";" or "}""#, line: 2)
    }

    func testQuotedAndEscapedDirectiveArguments() throws {
        let conf = try parseConf(inHTTP(#"""
            "server" {
                'listen' "127.0.0.1:8080";
                server_name "a b" 'c';
                location "/x y" { return 200 "q\"\tq"; }
            }
            """#))
        let server = try XCTUnwrap(conf.http?.servers.first)
        XCTAssertEqual(server.serverNames, ["a b", "c"])
        XCTAssertEqual(server.locations.first?.pattern, "/x y")
        guard case .return(let code, let text)? = server.locations.first?.script.instructions.first else { return XCTFail("no return") }
        XCTAssertEqual(code, 200)
        XCTAssertEqual(text?.text, "q\"\tq")
        XCTAssertEqual(server.listens.first?.address.description, "127.0.0.1:8080")
    }

    func testCommentsDoNotHideLineNumbers() {
        assertError("# one\n# two\nevents { # three\n} # four\nbogus; # five", #"unknown directive "bogus""#, line: 5)
    }
}
