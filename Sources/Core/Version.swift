/// Vigil's version, as `-v` prints it and the Server header and error pages carry it.
public enum Version {
    public static let number = "0.1.0"
    /// `server_tokens on`: the name with the version.
    public static let serverToken = "vigil/\(number)"
    /// `server_tokens off`.
    public static let serverName = "vigil"
}
