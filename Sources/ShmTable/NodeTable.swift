#if canImport(Glibc)
import Glibc
#endif

/// The table LimitZone and CacheZone keep in their shared mappings: fixed-size nodes in hash chains and one
/// LRU list, all linked by u32 references (a node's index + 1; 0 ends a list) so that every process can follow
/// them wherever the mapping lies. The caller holds the zone's lock, picks each key's bucket and compares keys;
/// this keeps the lists.
///
/// The zone's header holds, from byte 64: nodes ever used, the free list's head, the LRU list's head (the most
/// recently used) and tail, live nodes (u32 each). The buckets follow the header (one u32 per node), then,
/// 64-aligned, the nodes; each node has its chain, LRU prev and LRU next references at offsets the zone gives.
struct NodeTable {
    let base: UnsafeMutableRawPointer
    /// Nodes (and buckets) the mapping holds.
    let capacity: Int
    let nodeSize: Int
    private let headerSize: Int
    private let nodesOffset: Int
    private let chainField: Int, prevField: Int, nextField: Int
    private static let usedOffset = 64, freeOffset = 68, headOffset = 72, tailOffset = 76, liveOffset = 80

    init(base: UnsafeMutableRawPointer, size: Int, headerSize: Int, nodeSize: Int, chainField: Int, prevField: Int, nextField: Int) {
        self.base = base
        self.headerSize = headerSize
        self.nodeSize = nodeSize
        self.chainField = chainField
        self.prevField = prevField
        self.nextField = nextField
        // Each node costs its bytes and a bucket; the node area starts on a cache line.
        capacity = (size - headerSize - 64) / (nodeSize + 4)
        nodesOffset = headerSize + (capacity * 4 + 63) / 64 * 64
        precondition(capacity > 0 && nodesOffset + capacity * nodeSize <= size)
    }

    @inline(__always) func node(_ ref: UInt32) -> UnsafeMutableRawPointer { base + nodesOffset + Int(ref - 1) * nodeSize }
    var live: Int { Int(field(Self.liveOffset)) }
    /// The least recently used node (0: none).
    var tail: UInt32 { field(Self.tailOffset) }
    /// The first node of bucket `b`'s chain, and the one after `ref` in its chain.
    @inline(__always) func first(inBucket b: Int) -> UInt32 { field(headerSize + b * 4) }
    @inline(__always) func next(inChain ref: UInt32) -> UInt32 { link(ref, chainField) }
    /// The node used just more recently than `ref`.
    @inline(__always) func newer(than ref: UInt32) -> UInt32 { link(ref, prevField) }

    /// A new zeroed node in bucket `b`, at the front of the LRU list; nil when every node is taken.
    func insert(bucket b: Int) -> UInt32? {
        var ref = field(Self.freeOffset)
        if ref != 0 {
            setField(Self.freeOffset, link(ref, chainField))
        } else {
            // Nodes never used are taken in order, so a zone touches the pages its keys need, not its size.
            let used = field(Self.usedOffset)
            guard Int(used) < capacity else { return nil }
            setField(Self.usedOffset, used + 1)
            ref = used + 1
        }
        memset(node(ref), 0, nodeSize)
        setLink(ref, chainField, first(inBucket: b))
        setField(headerSize + b * 4, ref)
        pushFront(ref)
        setField(Self.liveOffset, field(Self.liveOffset) + 1)
        return ref
    }

    /// Takes `ref` out of bucket `b` and the LRU list, onto the free list.
    func remove(_ ref: UInt32, bucket b: Int) {
        let next = link(ref, chainField)
        if first(inBucket: b) == ref {
            setField(headerSize + b * 4, next)
        } else {
            var p = first(inBucket: b)
            while p != 0 && link(p, chainField) != ref { p = link(p, chainField) }
            if p != 0 { setLink(p, chainField, next) }
        }
        unlinkLRU(ref)
        setLink(ref, chainField, field(Self.freeOffset))
        setField(Self.freeOffset, ref)
        setField(Self.liveOffset, field(Self.liveOffset) - 1)
    }

    /// `ref` becomes the most recently used.
    func touch(_ ref: UInt32) {
        guard field(Self.headOffset) != ref else { return }
        unlinkLRU(ref)
        pushFront(ref)
    }

    @inline(__always) private func field(_ offset: Int) -> UInt32 { base.load(fromByteOffset: offset, as: UInt32.self) }
    @inline(__always) private func setField(_ offset: Int, _ v: UInt32) { base.storeBytes(of: v, toByteOffset: offset, as: UInt32.self) }
    @inline(__always) private func link(_ ref: UInt32, _ offset: Int) -> UInt32 { node(ref).load(fromByteOffset: offset, as: UInt32.self) }
    @inline(__always) private func setLink(_ ref: UInt32, _ offset: Int, _ v: UInt32) { node(ref).storeBytes(of: v, toByteOffset: offset, as: UInt32.self) }

    private func pushFront(_ ref: UInt32) {
        let head = field(Self.headOffset)
        setLink(ref, prevField, 0)
        setLink(ref, nextField, head)
        if head != 0 { setLink(head, prevField, ref) } else { setField(Self.tailOffset, ref) }
        setField(Self.headOffset, ref)
    }

    private func unlinkLRU(_ ref: UInt32) {
        let prev = link(ref, prevField), next = link(ref, nextField)
        if prev != 0 { setLink(prev, nextField, next) } else { setField(Self.headOffset, next) }
        if next != 0 { setLink(next, prevField, prev) } else { setField(Self.tailOffset, prev) }
    }
}
