/// nginx's configuration tokenizer, state for state:
/// quotes, backslash escapes, `#` comments at token start, `${var}`, and the same error wording.
struct Lexer {
    enum Terminator { case semicolon, blockStart, blockEnd, endOfInput }

    struct Statement {
        var words: [String]
        var terminator: Terminator
        var line: Int
    }

    private let bytes: [UInt8]
    private var pos = 0
    private(set) var line = 1
    let file: String
    /// `-g` parameters: end of input inside a statement is worded differently.
    let isParameterString: Bool

    init(bytes: [UInt8], file: String, isParameterString: Bool = false) {
        self.bytes = bytes
        self.file = file
        self.isParameterString = isParameterString
    }

    private func error(_ message: String) -> ConfigError {
        ConfigError(message, file: file, line: reportedLine)
    }

    /// `-g` errors are located `in command line`, with no line number.
    var reportedLine: Int { isParameterString ? 0 : line }

    private static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A }

    /// Reads the words of one statement and what ended it.
    mutating func next() throws -> Statement {
        var words: [String] = []
        var lastSpace = true, sharpComment = false, variable = false
        var quoted = false, sQuoted = false, dQuoted = false, needSpace = false
        var start = 0

        while true {
            if pos >= bytes.count {
                if !words.isEmpty || !lastSpace {
                    if isParameterString { throw error("unexpected end of parameter, expecting \";\"") }
                    throw error("unexpected end of file, expecting \";\" or \"}\"")
                }
                return Statement(words: words, terminator: .endOfInput, line: line)
            }
            let ch = bytes[pos]
            pos += 1
            if ch == 0x0A {
                line += 1
                if sharpComment { sharpComment = false }
            }
            if sharpComment { continue }
            if quoted { quoted = false; continue }

            if needSpace {
                if Lexer.isSpace(ch) { lastSpace = true; needSpace = false; continue }
                if ch == UInt8(ascii: ";") { return Statement(words: words, terminator: .semicolon, line: line) }
                if ch == UInt8(ascii: "{") { return Statement(words: words, terminator: .blockStart, line: line) }
                if ch == UInt8(ascii: ")") {
                    lastSpace = true; needSpace = false
                } else {
                    throw error("unexpected \"\(Lexer.printable(ch))\"")
                }
            }

            if lastSpace {
                start = pos - 1
                if Lexer.isSpace(ch) { continue }
                switch ch {
                case UInt8(ascii: ";"), UInt8(ascii: "{"):
                    if words.isEmpty { throw error("unexpected \"\(Lexer.printable(ch))\"") }
                    return Statement(words: words, terminator: ch == UInt8(ascii: "{") ? .blockStart : .semicolon, line: line)
                case UInt8(ascii: "}"):
                    if !words.isEmpty { throw error("unexpected \"}\"") }
                    return Statement(words: words, terminator: .blockEnd, line: line)
                case UInt8(ascii: "#"):
                    sharpComment = true
                    continue
                case UInt8(ascii: "\\"):
                    quoted = true; lastSpace = false
                    continue
                case UInt8(ascii: "\""):
                    start += 1; dQuoted = true; lastSpace = false
                    continue
                case UInt8(ascii: "'"):
                    start += 1; sQuoted = true; lastSpace = false
                    continue
                case UInt8(ascii: "$"):
                    variable = true; lastSpace = false
                    continue
                default:
                    lastSpace = false
                }
            } else {
                if ch == UInt8(ascii: "{") && variable { continue }
                variable = false
                if ch == UInt8(ascii: "\\") { quoted = true; continue }
                if ch == UInt8(ascii: "$") { variable = true; continue }

                var found = false
                if dQuoted {
                    if ch == UInt8(ascii: "\"") { dQuoted = false; needSpace = true; found = true }
                } else if sQuoted {
                    if ch == UInt8(ascii: "'") { sQuoted = false; needSpace = true; found = true }
                } else if Lexer.isSpace(ch) || ch == UInt8(ascii: ";") || ch == UInt8(ascii: "{") {
                    lastSpace = true; found = true
                }
                if found {
                    words.append(Lexer.unescape(bytes[start..<(pos - 1)]))
                    if ch == UInt8(ascii: ";") { return Statement(words: words, terminator: .semicolon, line: line) }
                    if ch == UInt8(ascii: "{") { return Statement(words: words, terminator: .blockStart, line: line) }
                }
            }
        }
    }

    /// nginx applies these escapes to every token, quoted or not; other backslashes stay.
    static func unescape(_ raw: ArraySlice<UInt8>) -> String {
        guard raw.contains(UInt8(ascii: "\\")) else { return String(decoding: raw, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let c = raw[i]
            if c == UInt8(ascii: "\\"), i + 1 < raw.endIndex {
                switch raw[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "\\"):
                    out.append(raw[i + 1]); i += 2; continue
                case UInt8(ascii: "t"): out.append(0x09); i += 2; continue
                case UInt8(ascii: "r"): out.append(0x0D); i += 2; continue
                case UInt8(ascii: "n"): out.append(0x0A); i += 2; continue
                default: break
                }
            }
            out.append(c)
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func printable(_ c: UInt8) -> String {
        (0x20..<0x7F).contains(c) ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16, uppercase: false)
    }
}
