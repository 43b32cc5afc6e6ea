/// Objects kept for reuse by the one thread that owns the pool: last in, first out, at most `keep` of them.
/// Every pool of a worker is one of these or an `ArrayPool`: a request then allocates neither the objects
/// nor their storage, and a burst leaves a bounded number behind.
public final class Pool<Object: AnyObject> {
    private var spare: [Object] = []
    public let keep: Int
    public init(keep: Int) { self.keep = keep }

    public var count: Int { spare.count }
    public func take() -> Object? { spare.popLast() }
    public func give(_ object: Object) { if spare.count < keep { spare.append(object) } }
    public func removeAll() { spare.removeAll() }
}

/// Arrays kept for their storage: taken empty (emptied then, when the pool holds the only reference), given back
/// while their last user may still hold them. Bounded in number and in the capacity of each.
public struct ArrayPool<Element> {
    private var arrays: [[Element]] = []
    public let keep: Int
    public let maxCapacity: Int

    public init(keep: Int, maxCapacity: Int) {
        self.keep = keep
        self.maxCapacity = maxCapacity
    }

    public mutating func take() -> [Element] {
        guard var a = arrays.popLast() else { return [] }
        a.removeAll(keepingCapacity: true)
        return a
    }

    public mutating func give(_ a: [Element]) {
        if arrays.count < keep && a.capacity > 0 && a.capacity <= maxCapacity { arrays.append(a) }
    }
}

/// A worker's byte buffers: client input buffers and output queues that idle keep-alive connections gave
/// back, and the 16 kB buffers upstream responses are read into (malloc of a block that size goes past
/// glibc's fast paths). Only the worker's event loop uses them; the checker thread has buffers of its own.
public final class BufferPools {
    private let inputs = Pool<ByteBuffer>(keep: 256)
    /// One input size is pooled: the common client_header_buffer_size; another size replaces it.
    private var inputSize = 0
    private let outputs = Pool<OutputQueue>(keep: 256)
    private let responses = Pool<ByteBuffer>(keep: 64)
    public static let responseCapacity = 16384

    /// Connections' buffer objects alive now (an input and an output per busy connection), kept by the
    /// connections: with `pooled`, what `$vigil_buffers_held` and `$vigil_buffers_pooled` show, so a test can
    /// see that idle connections hold none.
    public var held = 0
    public var pooled: Int { inputs.count + outputs.count }

    public init() {}

    public func takeInput(capacity: Int) -> ByteBuffer {
        if capacity == inputSize, let b = inputs.take() { return b }
        return ByteBuffer(capacity: capacity)
    }

    public func giveInput(_ b: ByteBuffer) {
        guard b.poolable else { return }
        if b.capacity != inputSize { inputs.removeAll(); inputSize = b.capacity }
        inputs.give(b)
    }

    public func takeOutput() -> OutputQueue { outputs.take() ?? OutputQueue() }

    public func giveOutput(_ q: OutputQueue) { if q.poolable { outputs.give(q) } }

    public func takeResponse() -> ByteBuffer { responses.take() ?? ByteBuffer(capacity: BufferPools.responseCapacity) }

    /// One that grew for an oversized head goes back to the allocator.
    public func giveResponse(_ b: ByteBuffer) {
        guard b.storageCapacity <= BufferPools.responseCapacity else { return }
        b.consume(b.readable)
        responses.give(b)
    }
}
