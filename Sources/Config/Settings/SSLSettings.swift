/// TLS towards clients (http and server levels): nginx's ssl module.
public struct SSLSettings: Sendable {
    @Setting public var certificates: [CertificateSetting] = []
    @Setting public var certificateKeys: [CertificateSetting] = []
    @Setting public var protocols = ["TLSv1.2", "TLSv1.3"]
    @Setting public var ciphers = "HIGH:!aNULL:!MD5"
    @Setting public var preferServerCiphers = false
    @Setting public var sessionCache = SessionCacheSetting.none
    @Setting public var sessionTimeout = 300_000
    @Setting public var sessionTickets = true
    /// `ssl_session_ticket_key`: files of 48 or 80 bytes; the first encrypts new tickets, all decrypt.
    @Setting public var sessionTicketKeys: [PathSetting] = []
    @Setting public var passwordFile: PathSetting? = nil
    @Setting public var dhParam: PathSetting? = nil
    @Setting public var ecdhCurve = "auto"
    /// `ssl_trusted_certificate`: CA certificates that client certificates are verified against, without
    /// being named to the client as `ssl_client_certificate`'s are.
    @Setting public var trustedCertificate: PathSetting? = nil
    /// `ssl_verify_client`, `ssl_client_certificate`, `ssl_verify_depth`, `ssl_crl`.
    @Setting public var verifyClient = VerifyClient.off
    @Setting public var clientCertificate: PathSetting? = nil
    @Setting public var verifyDepth = 1
    @Setting public var crl: PathSetting? = nil
    /// `ssl_reject_handshake`: a handshake for a name routed to this server ends with an unrecognized_name alert.
    @Setting public var rejectHandshake = false
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
        $sessionTicketKeys.inherit(p.$sessionTicketKeys)
        $passwordFile.inherit(p.$passwordFile)
        $dhParam.inherit(p.$dhParam)
        $ecdhCurve.inherit(p.$ecdhCurve)
        $trustedCertificate.inherit(p.$trustedCertificate)
        $verifyClient.inherit(p.$verifyClient)
        $clientCertificate.inherit(p.$clientCertificate)
        $verifyDepth.inherit(p.$verifyDepth)
        $crl.inherit(p.$crl)
        $rejectHandshake.inherit(p.$rejectHandshake)
        $on.inherit(p.$on)
    }
}

/// `ssl_verify_client`'s values. `optionalNoCA` lets a certificate whose issuer is unknown through (the
/// application checks it, from `$ssl_client_cert`).
public enum VerifyClient: String, Sendable {
    case off, on, optional, optionalNoCA = "optional_no_ca"
}
