// swift-tools-version:6.0
// Vigil: an nginx-compatible reverse proxy with active upstream health checks.
// No package dependencies: only the toolchain and a C shim for the syscalls Glibc's overlay lacks.
import PackageDescription

let v5: [SwiftSetting] = [.swiftLanguageMode(.v5)]
/// The request path and the prober run single-threaded per loop and touch class properties on every
/// request; release builds drop the run-time exclusivity checks there (the compile-time ones stay): they
/// were ~2% of a busy worker's CPU. Cross-module optimization lets the small HTTP and Event helpers the
/// worker calls per request be inlined and specialised across target boundaries.
let hotPath: [SwiftSetting] = v5 + [.unsafeFlags(["-enforce-exclusivity=unchecked", "-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "Vigil",
    products: [
        .executable(name: "vigil", targets: ["vigil"]),
        .executable(name: "shmdump", targets: ["shmdump"]),
    ],
    targets: [
        .target(name: "CShim", path: "Sources/CShim"),
        // What every layer needs and nothing protocol-specific: log levels and the error log, errno text, byte
        // buffers and the per-worker pools, time formats, the version.
        .target(name: "Core", dependencies: ["CShim"], path: "Sources/Core", swiftSettings: hotPath),
        // Debian's OpenSSL 3 (libssl-dev): the crypto stays in OpenSSL, the event handling is Vigil's.
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // Debian's libcrypt (libcrypt-dev) for the crypt(3) formats of auth_basic_user_file.
        .systemLibrary(name: "CCrypt", path: "Sources/CCrypt", pkgConfig: "libcrypt", providers: [.apt(["libcrypt-dev"])]),
        // Debian's zlib for gzip responses.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Debian's libnghttp2 (libnghttp2-dev), for the tests only: HTTPTests cross-check the HPACK codec against it.
        .systemLibrary(name: "CNGHTTP2", path: "Sources/CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .target(name: "Gzip", dependencies: ["Core", "CZlib"], path: "Sources/Gzip", swiftSettings: hotPath),
        .target(name: "TLS", dependencies: ["Core", "COpenSSL", "CShim", "Config"], path: "Sources/TLS", swiftSettings: hotPath),
        .target(name: "ShmTable", dependencies: ["Core", "CShim"], path: "Sources/ShmTable", swiftSettings: hotPath),
        // Debian's PCRE2, the regex library nginx uses; Script is nginx's rewrite language on top of it.
        .systemLibrary(name: "CPCRE2", path: "Sources/CPCRE2", pkgConfig: "libpcre2-8", providers: [.apt(["libpcre2-dev"])]),
        .target(name: "Script", dependencies: ["Core", "CPCRE2"], path: "Sources/Script", swiftSettings: hotPath),
        .target(name: "Config", dependencies: ["Core", "CShim", "Script"], path: "Sources/Config", swiftSettings: hotPath),
        .target(name: "Event", dependencies: ["Core", "CShim"], path: "Sources/Event", swiftSettings: hotPath),
        .target(name: "HTTP", dependencies: ["Core"], path: "Sources/HTTP", swiftSettings: hotPath),
        // nginx's `resolver`: a DNS client on a worker's event loop.
        .target(name: "DNS", dependencies: ["Core", "CShim", "Config", "Event"], path: "Sources/DNS", swiftSettings: hotPath),
        // nginx-upsync-module's etcd source on etcd's v3 API: a watch client on an event loop, its messages read
        // strictly.
        .target(name: "Etcd", dependencies: ["Core", "Event", "HTTP"], path: "Sources/Etcd", swiftSettings: v5),
        // Balancers (a file per algorithm), the keepalive pool, UpstreamConnection (connect, TLS handshake and
        // verification, timeouts) for the proxy and the checker alike, the retry policy.
        .target(name: "Upstream", dependencies: ["Core", "CShim", "Config", "ShmTable", "Event", "TLS"], path: "Sources/Upstream", swiftSettings: hotPath),
        .target(name: "Checks", dependencies: ["Core", "CShim", "Config", "DNS", "Etcd", "ShmTable", "Event", "HTTP", "TLS", "Upstream"], path: "Sources/Checks", swiftSettings: hotPath),
        // The client side of HTTP: a connection per protocol (HTTP/1, HTTP/2) feeding one request pipeline (routing,
        // rewrite, access and content phases, error pages), the response sink and its filters, the content
        // handlers that need no upstream, the access log.
        .target(name: "HTTPServer", dependencies: ["Core", "CShim", "Config", "Event", "HTTP", "Script", "TLS", "Gzip", "ShmTable",
                                                   "COpenSSL", "CCrypt"],
                path: "Sources/HTTPServer", swiftSettings: hotPath),
        // proxy_pass, fastcgi_pass, scgi_pass, uwsgi_pass: one upstream session as a content handler writing to the
        // response sink, with the HTTP/1 codec and the gateway protocols' request encoders and response decoders.
        .target(name: "HTTPProxy", dependencies: ["Core", "CShim", "COpenSSL", "Config", "Event", "HTTP", "HTTPServer", "Script", "ShmTable",
                                                  "TLS", "Upstream", "DNS"], path: "Sources/HTTPProxy", swiftSettings: hotPath),
        // The worker process shell: acceptors, signals, the connection set, the checker election.
        .target(name: "Worker", dependencies: ["Core", "CShim", "ShmTable", "Config", "Event", "Checks", "TLS", "HTTPServer", "HTTPProxy"],
                path: "Sources/worker", swiftSettings: hotPath),
        .executableTarget(name: "vigil", dependencies: ["Core", "CShim", "ShmTable", "Config", "Etcd", "Event", "Worker", "TLS", "HTTPServer"], path: "Sources/master", swiftSettings: v5),
        .executableTarget(name: "shmdump", dependencies: ["Core", "CShim", "ShmTable", "Config"], path: "Sources/shmdump", swiftSettings: v5),
        .target(name: "FuzzSupport", path: "Tests/FuzzSupport", swiftSettings: v5),
        // Runs the real binaries for IntegrationTests and FaultTests: processes, loopback clients and peers.
        .target(name: "TestHarness", path: "Tests/TestHarness", swiftSettings: v5),
        .testTarget(name: "ConfigTests", dependencies: ["Config", "Core", "FuzzSupport"], path: "Tests/ConfigTests", swiftSettings: v5),
        // nghttp2 only for the tests: they cross-check HTTP's own HPACK codec against it.
        .testTarget(name: "HTTPTests", dependencies: ["HTTP", "Core", "FuzzSupport", "CNGHTTP2"], path: "Tests/HTTPTests", swiftSettings: v5),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer", "HTTP", "Config", "Core", "Event", "Script", "ShmTable", "TLS", "CZlib"],
                    path: "Tests/HTTPServerTests", swiftSettings: v5),
        .testTarget(name: "EventTests", dependencies: ["Event"], path: "Tests/EventTests", swiftSettings: v5),
        .testTarget(name: "ShmTableTests", dependencies: ["ShmTable"], path: "Tests/ShmTableTests", swiftSettings: v5),
        .testTarget(name: "ChecksTests", dependencies: ["Checks", "Config", "Core", "ShmTable", "FuzzSupport"], path: "Tests/ChecksTests", swiftSettings: v5),
        .testTarget(name: "DNSTests", dependencies: ["DNS", "Event", "FuzzSupport"], path: "Tests/DNSTests", swiftSettings: v5),
        .testTarget(name: "EtcdTests", dependencies: ["Etcd", "Core", "Event", "TestHarness"], path: "Tests/EtcdTests", swiftSettings: v5),
        .testTarget(name: "TLSTests", dependencies: ["TLS", "Config"], path: "Tests/TLSTests", swiftSettings: v5),
        .testTarget(name: "GzipTests", dependencies: ["Gzip", "CZlib"], path: "Tests/GzipTests", swiftSettings: v5),
        .testTarget(name: "CoreTests", dependencies: ["Core", "CShim"], path: "Tests/CoreTests", swiftSettings: v5),
        .testTarget(name: "ScriptTests", dependencies: ["Script", "Config", "Core"], path: "Tests/ScriptTests", swiftSettings: v5),
        .testTarget(name: "UpstreamTests", dependencies: ["Upstream", "Config", "Core", "Event", "ShmTable", "TLS", "CShim"], path: "Tests/UpstreamTests", swiftSettings: v5),
        .testTarget(name: "HTTPProxyTests", dependencies: ["HTTPProxy", "HTTPServer", "HTTP", "Config", "Core", "CShim", "Event", "ShmTable",
                                                          "TLS", "Upstream", "Script"], path: "Tests/HTTPProxyTests", swiftSettings: v5),
        .testTarget(name: "IntegrationTests", dependencies: ["TestHarness"], path: "Tests/IntegrationTests", swiftSettings: v5),
        .testTarget(name: "FaultTests", dependencies: ["TestHarness"], path: "Tests/Fault", swiftSettings: v5),
    ]
)
