/// A variable whose value a block of the configuration computes from another value when a request first reads it
/// (`map`, `geo`, `split_clients`); unless volatile, the request keeps the value.
public protocol ComputedVariable: AnyObject {
    func evaluate(_ ctx: ScriptContext) -> String
    var volatile: Bool { get }
}
