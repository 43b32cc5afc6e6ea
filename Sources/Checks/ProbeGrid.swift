import CShim
import Event

/// The probes due on each grid tick (PeerProber.wait), started together by one timer. A timer per peer kept
/// every peer in the loop's heap: a sift of a 10,000-entry heap per probe, a retain per timer fired, and each
/// peer's timer object touched (a cache miss at that scale); here a probe's next start is an index appended
/// to its tick's list, and ~10 ticks are pending at a time.
final class ProbeGrid {
    private var due: [UInt64: [Int32]] = [:]   // tick (monotonic ms) → probers' indices, in the order added
    private var spare: [[Int32]] = []
    private var timer: Timer!
    private var armedFor: UInt64 = .max
    private let start: (Int, UInt64) -> Void

    /// `start(index, tick)` runs for each entry of a tick that has come.
    init(loop: EventLoop, start: @escaping (Int, UInt64) -> Void) {
        self.start = start
        timer = loop.makeTimer { [unowned(unsafe) self] in self.fire() }
    }

    /// The prober at `index` starts at `tick`, unless it was started otherwise by then (its own check).
    func add(_ index: Int, at tick: UInt64) {
        due[tick, default: spare.popLast() ?? []].append(Int32(truncatingIfNeeded: index))
        if tick < armedFor {
            armedFor = tick
            timer.rearm(at: tick)
        }
    }

    private func fire() {
        let now = vigil_monotonic_ms()
        armedFor = .max
        while let tick = due.keys.min() {
            guard tick <= now else {
                armedFor = tick
                timer.rearm(at: tick)
                return
            }
            var list = due.removeValue(forKey: tick)!
            for i in list { start(Int(i), tick) }
            list.removeAll(keepingCapacity: true)
            spare.append(list)
        }
    }
}
