/// TLS towards clients (http and server levels): nginx's ssl module.
public struct SSLSettings: Sendable {
    @Setting public var certificates: [PathSetting] = []
    @Setting public var certificateKeys: [PathSetting] = []
    @Setting public var protocols = ["TLSv1.2", "TLSv1.3"]
    @Setting public var ciphers = "HIGH:!aNULL:!MD5"
    @Setting public var preferServerCiphers = false
    @Setting public var sessionCache = SessionCacheSetting.none
    @Setting public var sessionTimeout = 300_000
    @Setting public var sessionTickets = true
    @Setting public var passwordFile: PathSetting? = nil
    @Setting public var dhParam: PathSetting? = nil
    @Setting public var ecdhCurve = "auto"
    /// `ssl_trusted_certificate`: CA certificates loaded into the server's verify store (nginx verifies OCSP
    /// responses and client certificates against them; Vigil does neither, so it only checks the file).
    @Setting public var trustedCertificate: PathSetting? = nil
    /// The deprecated `ssl on`: every `listen` of the server is a TLS one.
    @Setting public var on = false

    public init() {}

    mutating func merge(_ p: SSLSettings) {
        // ssl_certificate and ssl_certificate_key are inherited as a pair, as nginx's arrays are.
        if !$certificates.isSet && !$certificateKeys.isSet {
            $certificates.inherit(p.$certificates)
            $certificateKeys.inherit(p.$certificateKeys)
        }
        $protocols.inherit(p.$protocols)
        $ciphers.inherit(p.$ciphers)
        $preferServerCiphers.inherit(p.$preferServerCiphers)
        $sessionCache.inherit(p.$sessionCache)
        $sessionTimeout.inherit(p.$sessionTimeout)
        $sessionTickets.inherit(p.$sessionTickets)
        $passwordFile.inherit(p.$passwordFile)
        $dhParam.inherit(p.$dhParam)
        $ecdhCurve.inherit(p.$ecdhCurve)
        $trustedCertificate.inherit(p.$trustedCertificate)
        $on.inherit(p.$on)
    }
}
