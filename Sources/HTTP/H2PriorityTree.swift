/// The stream dependency tree of RFC 7540 §5.3, which nginx 1.22 keeps to order its DATA frames: each stream
/// depends on a parent (0: the root) with a weight 1...256. Nodes are the open streams and the idle ones a
/// PRIORITY frame placed (at most `maxIdle` of those, the oldest dropped first). A connection has few nodes
/// at a time, so they are an array searched by id; a stream without a node sits at the root with the default
/// weight.
public struct H2PriorityTree {
    struct Node {
        var id: UInt32
        var parent: UInt32
        var weight: Int
        /// Placed by a PRIORITY frame before (or without) its stream opening.
        var idle: Bool
    }

    private(set) var nodes: [Node] = []
    static let maxIdle = 32

    public init() {}

    /// Gives back the storage (an idle connection's memory); only when the tree is empty.
    public mutating func releaseStorage() {
        if nodes.isEmpty { nodes = [] }
    }

    private func index(_ id: UInt32) -> Int? {
        for i in nodes.indices where nodes[i].id == id { return i }
        return nil
    }

    private func parent(of id: UInt32) -> UInt32? { index(id).map { nodes[$0].parent } }

    /// A stream opens. A HEADERS frame's own priority places it; without one, a stream a PRIORITY frame placed
    /// keeps its place (as nginx keeps it), any other goes to the root with the default weight.
    public mutating func open(_ id: UInt32, priority: H2Priority?) {
        if let i = index(id) {
            nodes[i].idle = false
            if let priority { place(id, priority) }
            return
        }
        nodes.append(Node(id: id, parent: 0, weight: H2.defaultWeight, idle: false))
        if let priority { place(id, priority) }
    }

    /// A PRIORITY frame: the stream moves (an idle one gets a node first).
    public mutating func prioritize(_ id: UInt32, _ priority: H2Priority) {
        if index(id) == nil {
            nodes.append(Node(id: id, parent: 0, weight: H2.defaultWeight, idle: true))
            dropOldIdle()
        }
        place(id, priority)
    }

    /// A stream closes: its children take its place, sharing its weight in proportion to theirs (§5.3.4).
    public mutating func close(_ id: UInt32) {
        guard let i = index(id) else { return }
        let node = nodes.remove(at: i)
        var sum = 0
        for n in nodes where n.parent == id { sum += n.weight }
        guard sum > 0 else { return }
        for k in nodes.indices where nodes[k].parent == id {
            nodes[k].parent = node.parent
            nodes[k].weight = max(1, node.weight * nodes[k].weight / sum)
        }
    }

    /// Sets a node's dependency and weight (`priority.dependency` is not the node itself: the caller refuses
    /// that). A parent without a node puts the stream at the root, non-exclusively, as nginx does; a parent
    /// that depends on the stream first moves to the stream's place (§5.3.3).
    private mutating func place(_ id: UInt32, _ priority: H2Priority) {
        var parent = priority.dependency
        var exclusive = priority.exclusive
        if parent != 0 && index(parent) == nil {
            parent = 0
            exclusive = false
        }
        let i = index(id)!
        nodes[i].weight = priority.weight
        if parent != 0 && dependsOn(parent, id), let p = index(parent) {
            nodes[p].parent = nodes[i].parent
        }
        if exclusive {
            for k in nodes.indices where nodes[k].parent == parent && nodes[k].id != id { nodes[k].parent = id }
        }
        nodes[i].parent = parent
        // Placed last among the parent's children, as nginx queues it.
        nodes.append(nodes.remove(at: i))
    }

    /// Whether `id` has `ancestor` on its way to the root.
    private func dependsOn(_ id: UInt32, _ ancestor: UInt32) -> Bool {
        var next = parent(of: id) ?? 0
        var steps = 0
        while next != 0 && steps <= nodes.count {
            if next == ancestor { return true }
            next = parent(of: next) ?? 0
            steps += 1
        }
        return false
    }

    private mutating func dropOldIdle() {
        var idleCount = 0
        for n in nodes where n.idle { idleCount += 1 }
        guard idleCount > H2PriorityTree.maxIdle, let oldest = nodes.first(where: \.idle) else { return }
        close(oldest.id)
    }

    /// nginx's place for a stream's frames in its output queue (ngx_http_v2_queue_frame): the depth in the
    /// tree, then the share of the weights on the way to the root; nil only if the walk to the root is longer
    /// than the tree (which `place` keeps free of cycles).
    public func queuePlace(_ id: UInt32) -> H2QueuePlace? {
        var rank = 0, share = 1.0
        var next = id
        while next != 0 {
            rank += 1
            if rank > nodes.count + 1 { return nil }
            guard let i = index(next) else {
                share *= Double(H2.defaultWeight) / 256
                break
            }
            share *= Double(nodes[i].weight) / 256
            next = nodes[i].parent
        }
        return H2QueuePlace(rank: rank, share: share)
    }
}

/// Where a stream's DATA goes in nginx's order: a lower rank first, then a larger share.
public struct H2QueuePlace: Equatable, Sendable {
    public var rank: Int
    public var share: Double

    public func precedes(_ other: H2QueuePlace) -> Bool { rank < other.rank || rank == other.rank && share > other.share }
}
