#if canImport(Glibc)
import Glibc
#endif
import CShim

/// Connection counters shared by every worker of every generation (stub_status). An anonymous shared
/// mapping made by the master before its first fork, so it survives reloads as nginx's counters do.
///
/// Each worker adds to a row of its own, one cache line: with a line per counter shared by all workers (as
/// nginx has them), every request moved five lines between CPUs. A reader sums the rows. When a worker exits
/// the master clears its row's gauges (active, reading, writing): a killed worker's connections would
/// otherwise stay counted for good (as they do in nginx); its totals stay, and the next worker given the row
/// adds on to them.
public final class SharedCounters {
    public enum Field: Int, CaseIterable {
        case accepted, handled, requests, active, reading, writing
    }

    /// Row 0 is shared by any workers beyond the others (more than 255 alive at once); it is never cleared.
    public static let rows = 256
    private static let rowWords = 8   // 64 bytes: one cache line per row
    private static let gauges: [Field] = [.active, .reading, .writing]

    private let base: UnsafeMutablePointer<UInt64>
    /// The row this process adds to: set in a worker right after fork.
    public var row = 0

    public init() {
        let bytes = Self.rows * Self.rowWords * 8
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        precondition(p != MAP_FAILED, "mmap of the shared counters failed")
        base = p!.bindMemory(to: UInt64.self, capacity: bytes / 8)
    }

    @inline(__always) private func slot(_ f: Field, row: Int) -> UnsafeMutablePointer<UInt64> {
        base + row * Self.rowWords + f.rawValue
    }

    @inline(__always) public func add(_ f: Field, _ v: Int64 = 1) {
        _ = vigil_fetch_add_u64(slot(f, row: row), UInt64(bitPattern: v))
    }

    /// The sum over every row.
    public func value(_ f: Field) -> Int64 {
        var sum: UInt64 = 0
        for r in 0..<Self.rows { sum &+= vigil_load_acquire_u64(slot(f, row: r)) }
        return Int64(bitPattern: sum)
    }

    /// A row no live worker uses (row 0 when all are taken).
    public static func freeRow(besides used: some Sequence<Int>) -> Int {
        let taken = Set(used)
        return (1..<rows).first { !taken.contains($0) } ?? 0
    }

    /// The worker that added to `row` is gone: the connections it counted are closed.
    public func clearGauges(row: Int) {
        guard row != 0 else { return }
        for f in Self.gauges { vigil_store_release_u64(slot(f, row: row), 0) }
    }
}
