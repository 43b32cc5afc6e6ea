import Foundation
import XCTest
@testable import Config
@testable import HTTPProxy

/// What of an upstream's response the cache keeps, and for how long, as nginx decides it from the head.
final class CachePolicyTests: XCTestCase {
    private func freshness(_ fields: [(String, String)], status: Int = 200, ignored: IgnoredUpstreamHeaders = [],
                           valid: [CacheValidity] = []) -> Freshness? {
        var settings = CacheSettings()
        settings.valid = valid
        return CachePolicy.freshness(status: status, fields: fields.map { (name: $0.0, value: $0.1) }, ignored: ignored,
                                     settings: settings, now: 1000)
    }

    func testTheHeadDecides() {
        XCTAssertEqual(freshness([("Cache-Control", "max-age=60")])?.validUntil, 1060)
        XCTAssertEqual(freshness([("Cache-Control", "public, s-maxage=30, max-age=60")])?.validUntil, 1030)
        XCTAssertNil(freshness([("Cache-Control", "no-cache, max-age=60")]))
        XCTAssertNil(freshness([("Cache-Control", "max-age=0")]))
        XCTAssertEqual(freshness([("X-Accel-Expires", "20"), ("Cache-Control", "no-store")])?.validUntil, 1020, "X-Accel-Expires first")
        XCTAssertEqual(freshness([("X-Accel-Expires", "@500")])?.validUntil, 500, "an absolute time, past or not")
        XCTAssertNil(freshness([("X-Accel-Expires", "0"), ("Cache-Control", "max-age=60")]))
        XCTAssertEqual(freshness([("X-Accel-Expires", "60"), ("X-Accel-Expires", "0")])?.validUntil, 1060, "the second is ignored")
        XCTAssertEqual(freshness([("Expires", "Thu, 01 Jan 1970 00:20:00 GMT")])?.validUntil, 1200)
        XCTAssertNil(freshness([("Expires", "Thu, 01 Jan 1970 00:10:00 GMT")]), "already expired")
        XCTAssertEqual(freshness([("Cache-Control", "max-age=60"), ("Expires", "Thu, 01 Jan 1970 00:00:01 GMT")])?.validUntil, 1060)
        XCTAssertNil(freshness([("Set-Cookie", "a=b"), ("Cache-Control", "max-age=60")]))
        XCTAssertNil(freshness([("Vary", "Accept, *")]))
        let extended = freshness([("Cache-Control", "max-age=5, stale-while-revalidate=30, stale-if-error=90")])
        XCTAssertEqual([extended?.validUntil, extended?.updatingSeconds, extended?.errorSeconds], [1005, 30, 90])
    }

    func testCacheValidWithoutLifetimeInTheHead() {
        let valid = [CacheValidity(codes: [200, 301, 302], seconds: 600), CacheValidity(codes: [], seconds: 5)]
        XCTAssertEqual(freshness([], valid: valid)?.validUntil, 1600)
        XCTAssertEqual(freshness([], status: 404, valid: valid)?.validUntil, 1005, "any")
        XCTAssertNil(freshness([]), "nothing says how long")
    }

    func testIgnoredHeadersAreNotLookedAt() {
        let valid = [CacheValidity(codes: [200], seconds: 10)]
        XCTAssertEqual(freshness([("Set-Cookie", "a=b")], ignored: .setCookie, valid: valid)?.validUntil, 1010)
        XCTAssertEqual(freshness([("Cache-Control", "private")], ignored: .cacheControl, valid: valid)?.validUntil, 1010)
        XCTAssertEqual(freshness([("X-Accel-Expires", "0")], ignored: .xAccelExpires, valid: valid)?.validUntil, 1010)
        XCTAssertEqual(freshness([("Vary", "*")], ignored: .vary, valid: valid)?.validUntil, 1010)
    }

    func testFilesAreLaidOutAsNginxLaysThem() {
        var spec = CacheZoneSpec(path: "/c", location: SourceLocation(file: "t", line: 1))
        spec.levels = [1, 2]
        let (digest, path) = ProxyCache.locate(Array("http://localhost/".utf8), in: spec)
        let name = String(path.split(separator: "/").last!)
        XCTAssertEqual(name.count, 32)
        XCTAssertEqual(path, "/c/\(name.suffix(1))/\(name.dropLast().suffix(2))/\(name)")
        XCTAssertEqual(Array(name.utf8).withUnsafeBytes { ProxyCache.digest(ofName: $0) }, digest, "the loader reads names back")
        var variable = spec
        variable.levels = [2]
        XCTAssertEqual(ProxyCache.path(of: digest, in: variable), "/c/\(name.suffix(2))/\(name)")
    }

    func testTheFileHeaderRoundTrips() throws {
        let file = CacheFile(validUntil: 1234, updatingSeconds: 5, errorSeconds: 6, storedAt: 1000, lastModified: -1, status: 404,
                             etag: "\"x\"", key: Array("key".utf8), varyNames: ["accept-encoding", "x-lang"],
                             variant: Array("accept-encoding:gzip\n".utf8), headLength: 17)
        let path = NSTemporaryDirectory() + "/cachefile-\(getpid())"
        let bytes = file.preamble() + [UInt8](repeating: 0x41, count: 17)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let read = try XCTUnwrap(CacheFile.read(fd))
        XCTAssertEqual(read.validUntil, 1234)
        XCTAssertEqual([read.updatingSeconds, read.errorSeconds, read.storedAt, read.lastModified, read.status], [5, 6, 1000, -1, 404])
        XCTAssertEqual(read.etag, "\"x\"")
        XCTAssertEqual(read.key, Array("key".utf8))
        XCTAssertEqual(read.varyNames, ["accept-encoding", "x-lang"])
        XCTAssertEqual(read.bodyStart, bytes.count)
        XCTAssertTrue(CacheFile.refresh(path: path, validUntil: 99))
        XCTAssertEqual(CacheFile.read(fd)?.validUntil, 99)
    }
}
