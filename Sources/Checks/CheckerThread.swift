#if canImport(Glibc)
import Glibc
#endif
import Config
import ShmTable

/// Runs a `CheckEngine` on its own thread so that proxy load in the worker's loop never delays a probe.
public final class CheckerThread {
    public let engine: CheckEngine
    private var thread = pthread_t()
    private var running = false

    public init(engine: CheckEngine) { self.engine = engine }

    public func start() {
        let ctx = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { ctx in
            let me = Unmanaged<CheckerThread>.fromOpaque(ctx!).takeRetainedValue()
            me.engine.run()
            return nil
        }, ctx)
        if rc == 0 {
            running = true
        } else {
            Unmanaged<CheckerThread>.fromOpaque(ctx).release()
        }
    }

    /// Stops the engine and waits for the thread to end.
    public func stop() {
        guard running else { return }
        running = false
        engine.stop()
        pthread_join(thread, nil)
    }
}
