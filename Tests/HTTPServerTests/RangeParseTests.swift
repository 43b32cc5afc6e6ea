import XCTest
@testable import HTTPServer

/// The Range header's parse, case by case against ngx_http_range_parse (the nginx tests and the side-by-side
/// test cover what a response does with it).
final class RangeParseTests: XCTestCase {
    private func parse(_ v: String, length: Int = 1000, limit: Int = Int(Int32.max)) -> String {
        var v = v
        let plan = v.withUTF8 { RangeFilter.parse(UnsafeRawBufferPointer($0), length: length, limit: limit) }
        switch plan {
        case .whole: return "whole"
        case .unsatisfiable: return "416"
        case .partial(let spans): return spans.map { "\($0.start)-\($0.end)" }.joined(separator: ",")
        }
    }

    func testForms() {
        XCTAssertEqual(parse("0-8"), "0-9")
        XCTAssertEqual(parse(" 0 - 8 , -10,990-"), "0-9,990-1000,990-1000")
        XCTAssertEqual(parse("990-1990"), "990-1000")
        XCTAssertEqual(parse("-2000"), "0-1000")
        XCTAssertEqual(parse("-0"), "416", "an empty suffix is left out")
        XCTAssertEqual(parse("5-2"), "416")
        XCTAssertEqual(parse("5--3"), "416", "a suffix only where a range starts")
        XCTAssertEqual(parse("1000-"), "416")
        XCTAssertEqual(parse("0-1,1000-"), "0-2")
        XCTAssertEqual(parse("10-11 12-"), "416")
        XCTAssertEqual(parse("10"), "416")
        XCTAssertEqual(parse("99999999999999999999-"), "416", "past the largest offset")
        XCTAssertEqual(parse("0-"), "0-1000")
        XCTAssertEqual(parse("0-", length: 0), "whole", "a range from 0 of an empty body")
        XCTAssertEqual(parse("0-999,0-0"), "whole", "more bytes than the body has")
        XCTAssertEqual(parse("0-1,3-4,6-7", limit: 2), "whole", "more than max_ranges")
        XCTAssertEqual(parse("0-1,3-4,2000-", limit: 2), "0-2,3-5", "a range left out does not count")
    }
}
