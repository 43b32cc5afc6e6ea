/// One inheritable setting of a module, nginx's merge down the levels in a type: its default lives where it is
/// declared, a directive sets it (and marks it set, so a second one is a duplicate), and when the
/// configuration loads each level takes its parent's value where it set none. Workers read plain values,
/// never an optional to default at the read site.
@propertyWrapper
public struct Setting<Value> {
    private var value: Value
    /// Whether a directive at this level (or, once merged, at a level above) set it.
    public private(set) var isSet = false

    public init(wrappedValue: Value) { value = wrappedValue }

    public var wrappedValue: Value {
        get { value }
        set { value = newValue; isSet = true }
    }

    /// `$name` for the directive handlers (key paths) and merges.
    public var projectedValue: Setting<Value> {
        get { self }
        set { self = newValue }
    }

    /// The parent's value, unless this level set its own.
    mutating func inherit(_ parent: Setting<Value>) {
        guard !isSet else { return }
        value = parent.value
        isSet = parent.isSet
    }

    /// Replaces the value without marking it set by a directive (a default that depends on the prefix).
    mutating func resolve(_ transform: (Value) -> Value) { value = transform(value) }
}

extension Setting: Sendable where Value: Sendable {}
