import Core

/// `limit_req zone=name [burst=N] [nodelay | delay=N]`, with the zone's index in the configuration's
/// `limitZones`; burst and delay in milli-requests, as nginx keeps them.
public struct LimitReqRule: Sendable, Equatable {
    public let zone: Int
    public let burst: Int
    public let delay: Int
}

/// `limit_conn zone number`.
public struct LimitConnRule: Sendable, Equatable {
    public let zone: Int
    public let limit: Int
}

/// nginx's limit_req and limit_conn modules, per level. A level with no `limit_req` (or `limit_conn`) takes
/// every one of its parent's; one with any keeps only its own, as nginx merges the arrays.
public struct LimitSettings: Sendable {
    @Setting public var requests: [LimitReqRule] = []
    @Setting public var requestStatus = 503
    @Setting public var requestLogLevel = LogLevel.error
    @Setting public var requestDryRun = false
    @Setting public var connections: [LimitConnRule] = []
    @Setting public var connectionStatus = 503
    @Setting public var connectionLogLevel = LogLevel.error
    @Setting public var connectionDryRun = false

    public init() {}

    /// Delays are logged one level below refusals (info stays info), as nginx's delay_log_level.
    public var delayLogLevel: LogLevel { requestLogLevel == .info ? .info : LogLevel(rawValue: requestLogLevel.rawValue + 1)! }

    mutating func merge(_ p: LimitSettings) {
        $requests.inherit(p.$requests)
        $requestStatus.inherit(p.$requestStatus)
        $requestLogLevel.inherit(p.$requestLogLevel)
        $requestDryRun.inherit(p.$requestDryRun)
        $connections.inherit(p.$connections)
        $connectionStatus.inherit(p.$connectionStatus)
        $connectionLogLevel.inherit(p.$connectionLogLevel)
        $connectionDryRun.inherit(p.$connectionDryRun)
    }
}
