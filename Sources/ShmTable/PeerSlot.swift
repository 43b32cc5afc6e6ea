import CShim

/// One 64-byte peer slot. The checker is the only writer of the verdict; it brackets multi-field updates with
/// the sequence in the state word (a seqlock). Balancers read just the down bit: one acquiring load. The
/// control word (admin state, re-check request) is a separate atomic that workers write.
public struct PeerSlot {
    let base: UnsafeMutableRawPointer

    private var state: UnsafeMutablePointer<UInt64> { (base + Layout.stateOffset).assumingMemoryBound(to: UInt64.self) }

    /// The balancer's question: lock-free, no syscall.
    @inline(__always) public var isDown: Bool { vigil_load_acquire_u64(state) & StateBits.down != 0 }

    /// Whether the checker has yet to decide this new peer (StateBits.firstRound): asked only when no peer is live.
    public var inFirstRound: Bool { vigil_load_acquire_u64(state) & StateBits.firstRound != 0 }

    public var type: UInt8 { base.load(fromByteOffset: Layout.typeOffset, as: UInt8.self) }
    /// When the peer last flipped (monotonic ms, 0: never): one aligned load, for slow_start's ramp.
    @inline(__always) public var lastChangeMs: UInt64 { base.load(fromByteOffset: Layout.lastChangeOffset, as: UInt64.self) }
    public var port: UInt16 { base.load(fromByteOffset: Layout.portOffset, as: UInt16.self) }

    /// Writes a whole state (single writer only).
    public func write(_ s: PeerState) {
        let old = vigil_load_acquire_u64(state)
        let seq = old & ~StateBits.flagsMask
        vigil_store_release_u64(state, seq &+ StateBits.sequenceOne | (old & StateBits.flagsMask))   // odd: writing
        vigil_fence_release()
        base.storeBytes(of: s.rise, toByteOffset: Layout.riseOffset, as: UInt32.self)
        base.storeBytes(of: s.fall, toByteOffset: Layout.fallOffset, as: UInt32.self)
        base.storeBytes(of: s.lastCheckMs, toByteOffset: Layout.lastCheckOffset, as: UInt64.self)
        base.storeBytes(of: s.checks, toByteOffset: Layout.checksOffset, as: UInt32.self)
        base.storeBytes(of: s.failures, toByteOffset: Layout.failuresOffset, as: UInt32.self)
        base.storeBytes(of: s.lastChangeMs, toByteOffset: Layout.lastChangeOffset, as: UInt64.self)
        base.storeBytes(of: s.stateChanges, toByteOffset: Layout.changesOffset, as: UInt16.self)
        base.storeBytes(of: UInt16(s.reason.rawValue & 0x3F) | min(s.lastStatus, 999) << 6, toByteOffset: Layout.reasonOffset, as: UInt16.self)
        base.storeBytes(of: s.rttUs, toByteOffset: Layout.rttOffset, as: UInt32.self)
        let flags = (s.down ? StateBits.down : 0) | (s.checked ? StateBits.checked : 0) | (s.firstRound ? StateBits.firstRound : 0)
        vigil_store_release_u64(state, (seq &+ 2 &* StateBits.sequenceOne) | flags)   // even: published
    }

    /// A consistent snapshot; retries while the writer is mid-update (bounded, then returns the last read).
    public func read() -> PeerState {
        var result = PeerState(down: false)
        for _ in 0..<1000 {
            let s1 = vigil_load_acquire_u64(state)
            if (s1 >> StateBits.sequenceShift) & 1 == 1 { continue }
            result.down = s1 & StateBits.down != 0
            result.checked = s1 & StateBits.checked != 0
            result.firstRound = s1 & StateBits.firstRound != 0
            result.rise = base.load(fromByteOffset: Layout.riseOffset, as: UInt32.self)
            result.fall = base.load(fromByteOffset: Layout.fallOffset, as: UInt32.self)
            result.lastCheckMs = base.load(fromByteOffset: Layout.lastCheckOffset, as: UInt64.self)
            result.checks = base.load(fromByteOffset: Layout.checksOffset, as: UInt32.self)
            result.failures = base.load(fromByteOffset: Layout.failuresOffset, as: UInt32.self)
            result.lastChangeMs = base.load(fromByteOffset: Layout.lastChangeOffset, as: UInt64.self)
            result.stateChanges = base.load(fromByteOffset: Layout.changesOffset, as: UInt16.self)
            let reasonStatus = base.load(fromByteOffset: Layout.reasonOffset, as: UInt16.self)
            result.reason = FailureReason(rawValue: UInt8(reasonStatus & 0x3F)) ?? .protocolError
            result.lastStatus = reasonStatus >> 6
            result.rttUs = base.load(fromByteOffset: Layout.rttOffset, as: UInt32.self)
            vigil_fence_acquire()
            if vigil_load_acquire_u64(state) == s1 { return result }
        }
        return result
    }

    private var controlWord: UnsafeMutablePointer<UInt32> { (base + Layout.controlOffset).assumingMemoryBound(to: UInt32.self) }
    private static let recheckBit: UInt32 = 4
    private static let adminMask: UInt32 = 3

    /// A worker's request that the checker probe this peer now (a proxied request to it failed): one load, and
    /// one atomic or when the request is not already pending. True when this call made it pending (the caller
    /// then rings the segment's doorbell).
    @inline(__always) public func requestRecheck() -> Bool {
        guard vigil_load_acquire_u32(controlWord) & Self.recheckBit == 0 else { return false }
        return vigil_fetch_or_u32(controlWord, Self.recheckBit) & Self.recheckBit == 0
    }

    /// The checker takes a pending request, clearing it.
    public func takeRecheck() -> Bool {
        guard vigil_load_acquire_u32(controlWord) & Self.recheckBit != 0 else { return false }
        vigil_fetch_and_u32(controlWord, ~Self.recheckBit)
        return true
    }

    /// A reused dynamic slot starts ready with no re-check pending (single writer, before the peer is published).
    func clearControl() { vigil_store_release_u32(controlWord, 0) }

    @inline(__always) public var admin: AdminState {
        AdminState(rawValue: vigil_load_acquire_u32(controlWord) & Self.adminMask) ?? .ready
    }

    /// Sets the operator's state, leaving a pending re-check request as it is; returns the state it replaced.
    @discardableResult
    public func setAdmin(_ a: AdminState) -> AdminState {
        while true {
            let old = vigil_load_acquire_u32(controlWord)
            if vigil_cas_u32(controlWord, old, old & ~Self.adminMask | a.rawValue) != 0 {
                return AdminState(rawValue: old & Self.adminMask) ?? .ready
            }
        }
    }
}

/// The checker election word in the header: a pid (0 = free) and the holder's heartbeat (monotonic ms).
public struct CheckerLock {
    let base: UnsafeMutableRawPointer
    private var pidWord: UnsafeMutablePointer<UInt32> { (base + Layout.checkerPidOffset).assumingMemoryBound(to: UInt32.self) }
    private var beatWord: UnsafeMutablePointer<UInt64> { (base + Layout.checkerHeartbeatOffset).assumingMemoryBound(to: UInt64.self) }

    public var holder: Int32 { Int32(bitPattern: vigil_load_acquire_u32(pidWord)) }
    public var heartbeatMs: UInt64 { vigil_load_acquire_u64(beatWord) }

    /// Takes the lock if it is free, or if the holder's heartbeat is older than `staleAfterMs`.
    public func tryAcquire(pid: Int32, nowMs: UInt64, staleAfterMs: UInt64) -> Bool {
        let current = vigil_load_acquire_u32(pidWord)
        if current == UInt32(bitPattern: pid) { return true }
        if current != 0 {
            let beat = heartbeatMs
            guard nowMs > beat, nowMs - beat > staleAfterMs else { return false }
        }
        // Publish a fresh heartbeat with the win so that nobody else sees the lock as stale.
        guard vigil_cas_u32(pidWord, current, UInt32(bitPattern: pid)) != 0 else { return false }
        vigil_store_release_u64(beatWord, nowMs)
        return true
    }

    public func heartbeat(pid: Int32, nowMs: UInt64) {
        if holder == pid { vigil_store_release_u64(beatWord, nowMs) }
    }

    /// Frees the lock if `pid` holds it (the holder on exit, or the master after reaping it).
    @discardableResult
    public func release(ifHeldBy pid: Int32) -> Bool {
        vigil_cas_u32(pidWord, UInt32(bitPattern: pid), 0) != 0
    }
}
