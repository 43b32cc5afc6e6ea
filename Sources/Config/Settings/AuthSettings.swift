import Script

/// The variable `auth_request_set` assigns and the value it takes, rendered on the subrequest.
public struct AuthRequestSet: Sendable {
    /// A declared variable, or a built-in with a set handler (`$args`, `$limit_rate`).
    public let variable: Variable
    public let value: Template
}

/// nginx's access phase beyond allow/deny: auth_basic, auth_request, and how `satisfy` combines them with
/// the access rules; `auth_delay` for their 401s.
public struct AuthSettings: Sendable {
    /// `auth_basic`: the realm, variables allowed; nil or a value of "off" leaves the check out.
    @Setting public var basicRealm: Template? = nil
    /// `auth_basic_user_file`: read for each request, a relative path against the configuration's directory.
    @Setting public var basicUserFile: Template? = nil
    /// `auth_request`: the URI of the subrequest that decides; nil is `off`.
    @Setting public var request: String? = nil
    /// `auth_request_set`: a level with its own does not inherit its parent's.
    @Setting public var requestSets: [AuthRequestSet] = []
    /// `satisfy any`: one module that allows is enough (else all must).
    @Setting public var satisfyAny = false
    /// `auth_delay`, in milliseconds.
    @Setting public var delay = 0

    public init() {}

    mutating func merge(_ p: AuthSettings) {
        $basicRealm.inherit(p.$basicRealm)
        $basicUserFile.inherit(p.$basicUserFile)
        $request.inherit(p.$request)
        $requestSets.inherit(p.$requestSets)
        $satisfyAny.inherit(p.$satisfyAny)
        $delay.inherit(p.$delay)
    }
}
