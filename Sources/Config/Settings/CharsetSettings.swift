/// nginx's charset module as far as `charset` alone takes it: the charset a response's Content-Type names.
public struct CharsetSettings: Sendable {
    /// nil: `charset off`.
    @Setting public var name: String? = nil

    public init() {}

    mutating func merge(_ p: CharsetSettings) {
        $name.inherit(p.$name)
    }
}
