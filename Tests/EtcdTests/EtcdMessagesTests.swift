import XCTest
@testable import Etcd

/// upsync's keys and values, and etcd's gateway replies as etcd 3.4 writes them (captured from a real one).
final class EtcdMessagesTests: XCTestCase {
    func testReadsUpsyncKeysAndValues() throws {
        let full = try UpsyncPeer.parse(key: "/upstreams/web/127.0.0.1:8081",
                                        value: Array(#"{"weight":3,"max_fails":0,"fail_timeout":"30","down":1,"backup":0}"#.utf8)).get()
        XCTAssertEqual([full.name, full.host, "\(full.port)"], ["127.0.0.1:8081", "127.0.0.1", "8081"])
        XCTAssertEqual([full.weight, full.maxFails, full.failTimeout], [3, 0, 30])
        XCTAssertEqual([full.down, full.backup, full.isIPv6], [true, false, false])
        XCTAssertEqual(full.serverLine, "server 127.0.0.1:8081 weight=3 max_fails=0 fail_timeout=30s down;")
        let defaults = try UpsyncPeer.parse(key: "/upstreams/web/[::1]:80", value: []).get()
        XCTAssertEqual([defaults.weight, defaults.maxFails, defaults.failTimeout], [1, 2, 10])
        XCTAssertEqual([defaults.host, defaults.name], ["::1", "[::1]:80"])
        XCTAssertTrue(defaults.isIPv6)
        XCTAssertEqual(try UpsyncPeer.parse(key: "k/10.0.0.1:1", value: Array(" \n".utf8)).get().weight, 1)

        XCTAssertEqual(UpsyncPeer.parse(key: "/u/web/backend:80", value: []), .failure(.badKey("/u/web/backend:80")))
        for key in ["/u/127.0.0.1", "/u/127.0.0.1:0", "/u/127.0.0.1:70000", "/u/::1:80", "/u/[127.0.0.1]:80", "/u/[::1]80", "/u/"] {
            XCTAssertEqual(UpsyncPeer.parse(key: key, value: []), .failure(.badKey(key)), key)
        }
        XCTAssertEqual(UpsyncPeer.parse(key: "/u/1.2.3.4:5", value: Array("weight=2".utf8)), .failure(.notJSON("/u/1.2.3.4:5")))
        XCTAssertEqual(UpsyncPeer.parse(key: "/u/1.2.3.4:5", value: Array("[1]".utf8)), .failure(.notJSON("/u/1.2.3.4:5")))
        XCTAssertEqual(UpsyncPeer.parse(key: "/u/1.2.3.4:5", value: Array(#"{"weight":0}"#.utf8)), .failure(.badField("/u/1.2.3.4:5", "weight")))
        XCTAssertEqual(UpsyncPeer.parse(key: "/u/1.2.3.4:5", value: Array(#"{"down":2}"#.utf8)), .failure(.badField("/u/1.2.3.4:5", "down")))
        XCTAssertEqual(UpsyncPeer.parse(key: "/u/1.2.3.4:5", value: Array(#"{"weight":1.5}"#.utf8)), .failure(.badField("/u/1.2.3.4:5", "weight")))
    }

    func testRangeEndAndRequestBodies() {
        XCTAssertEqual(EtcdV3.rangeEnd("/upstreams/web/"), Array("/upstreams/web0".utf8))
        XCTAssertEqual(EtcdV3.rangeEnd(""), [0])
        XCTAssertEqual(EtcdV3.rangeBody(prefix: "/a/"), #"{"key":"L2Ev","range_end":"L2Ew"}"#)
        XCTAssertEqual(EtcdV3.watchBody(prefix: "/a/", from: 7),
                       #"{"create_request":{"key":"L2Ev","range_end":"L2Ew","start_revision":"7"}}"#)
    }

    func testReadsEtcdsReplies() throws {
        let range = #"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},"kvs":[{"key":"L3Vwc3RyZWFtcy90ZXN0LzEyNy4wLjAuMTo4MDgx","create_revision":"2","mod_revision":"2","version":"1","value":"eyJ3ZWlnaHQiOjJ9"},{"key":"L3Vwc3RyZWFtcy90ZXN0LzEyNy4wLjAuMTo4MDgy","create_revision":"3","mod_revision":"3","version":"1"}],"count":"2"}"#
        let reply = try XCTUnwrap(EtcdV3.rangeReply(Array(range.utf8)))
        XCTAssertEqual(reply.revision, 2)
        XCTAssertEqual(reply.pairs, [EtcdV3.KeyValue(key: "/upstreams/test/127.0.0.1:8081", value: Array(#"{"weight":2}"#.utf8)),
                                     EtcdV3.KeyValue(key: "/upstreams/test/127.0.0.1:8082", value: [])])
        XCTAssertEqual(EtcdV3.rangeReply(Array(#"{"header":{"revision":"9"}}"#.utf8))?.pairs, [])
        XCTAssertNil(EtcdV3.rangeReply(Array(#"{"kvs":[]}"#.utf8)))
        XCTAssertNil(EtcdV3.rangeReply(Array(#"{"header":{"revision":"1"},"kvs":[{"key":"!!"}]}"#.utf8)))

        let created = #"{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"2","raft_term":"2"},"created":true}}"#
        XCTAssertEqual(EtcdV3.watchMessage(Array(created.utf8)), .created)
        let put = #"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"L2EvMS4yLjMuNDo1","create_revision":"4","mod_revision":"4","version":"1","value":"e30="}},{"type":"DELETE","kv":{"key":"L2EvMS4yLjMuNDo2","mod_revision":"4"}}]}}"#
        XCTAssertEqual(EtcdV3.watchMessage(Array(put.utf8)),
                       .changes([.put(.init(key: "/a/1.2.3.4:5", value: Array("{}".utf8))), .delete(key: "/a/1.2.3.4:6")], revision: 4))
        XCTAssertEqual(EtcdV3.watchMessage(Array(#"{"result":{"header":{"revision":"9"},"compact_revision":"5"}}"#.utf8)),
                       .ended("compacted at revision 5"))
        XCTAssertEqual(EtcdV3.watchMessage(Array(#"{"result":{"header":{"revision":"9"},"canceled":true,"cancel_reason":"x"}}"#.utf8)), .ended("x"))
        XCTAssertEqual(EtcdV3.watchMessage(Array(#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}"#.utf8)),
                       .ended("etcdserver: no leader"))
        for bad in ["", "{}", "garbage", #"{"result":{"events":[{"kv":{}}],"header":{"revision":"1"}}}"#, #"{"result":{"events":[]}}"#] {
            XCTAssertNil(EtcdV3.watchMessage(Array(bad.utf8)), bad)
        }
    }
}
