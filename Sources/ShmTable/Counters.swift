#if canImport(Glibc)
import Glibc
#endif
import CShim

/// Connection counters shared by every worker of every generation (stub_status). An anonymous shared
/// mapping made by the master before its first fork, so it survives reloads as nginx's counters do.
public final class SharedCounters {
    public enum Field: Int, CaseIterable {
        case accepted, handled, requests, active, reading, writing
    }

    private let base: UnsafeMutablePointer<UInt64>

    public init() {
        let bytes = Field.allCases.count * 64   // one cache line per counter: workers hammer them
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        precondition(p != MAP_FAILED, "mmap of the shared counters failed")
        base = p!.bindMemory(to: UInt64.self, capacity: bytes / 8)
    }

    @inline(__always) private func slot(_ f: Field) -> UnsafeMutablePointer<UInt64> { base + f.rawValue * 8 }

    @inline(__always) public func add(_ f: Field, _ v: Int64 = 1) {
        _ = vigil_fetch_add_u64(slot(f), UInt64(bitPattern: v))
    }

    public func value(_ f: Field) -> Int64 { Int64(bitPattern: vigil_load_acquire_u64(slot(f))) }
}
