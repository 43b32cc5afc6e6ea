import XCTest
@testable import Config

/// The upstream API's state file: `server` lines as nginx writes them, each with its id in a comment.
final class StateFileTests: XCTestCase {
    func testReadsWhatItWritesAndHandEditedLines() throws {
        var a = StateServer(id: 4, address: try XCTUnwrap(StateServer.address("10.0.0.1:8080")))
        a.weight = 3; a.maxFails = 0; a.failTimeout = 1500; a.maxConns = 20; a.backup = true; a.down = true
        let b = StateServer(id: 7, address: try XCTUnwrap(StateServer.address("[::1]:80")))
        let text = StateFile.render([a, b])
        XCTAssertEqual(text, "server 10.0.0.1:8080 weight=3 max_fails=0 fail_timeout=1500ms max_conns=20 backup down; # id=4\n"
                           + "server [::1]:80 weight=1 max_fails=1 fail_timeout=10000ms; # id=7\n")
        XCTAssertEqual(try StateFile.parse(text).get(), [a, b])
        // Written by hand: no ids (numbered in order), comments, blank lines, nginx's time units.
        let hand = try StateFile.parse("# servers\n\nserver 10.0.0.2:81 fail_timeout=30s;\nserver 10.0.0.3:82 weight=2 ;\n").get()
        XCTAssertEqual(hand.map(\.id), [0, 1])
        XCTAssertEqual(hand.map(\.failTimeout), [30_000, 10_000])
        XCTAssertEqual(hand.map(\.weight), [1, 2])
    }

    func testRefusesWhatIsNotAServerLine() {
        for (text, line) in [("server backend.example:80;", 1), ("\nserver 10.0.0.1:80", 2), ("server 10.0.0.1:80 colour=red;", 1),
                             ("upstream x;", 1), ("server 10.0.0.1;", 1), ("server 10.0.0.1:80; # id=1\nserver 10.0.0.2:80; # id=1", 2),
                             ("server 10.0.0.1:80 weight=0;", 1)] {
            XCTAssertEqual(StateFile.parse(text), .failure(StateFileError(line: line)), text)
        }
        XCTAssertNil(StateServer.address("10.0.0.1"))
        XCTAssertNil(StateServer.address("10.0.0.1:0"))
        XCTAssertNil(StateServer.address("example.com:80"))
    }
}
