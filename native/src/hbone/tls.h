// HBONE's TLS with OpenSSL (the copy inside the Node binary when loaded as the
// addon): TLS 1.3 only, ALPN h2, the mesh roots as the only trust, SPIFFE ids
// read from URI SANs. Contexts are built from PEM once per identity and shared,
// reference-counted, by every connection that handshakes with them.
#pragma once
#include <openssl/ssl.h>

#include <string>

namespace ambient::hbone {

enum class TlsRole { kClient, kServer };

/** A context for `role` from a key, a certificate chain (leaf first) and the trust
 *  bundle, all PEM; nullptr with `error` naming what is wrong. */
SSL_CTX* BuildContext(TlsRole role, const std::string& key_pem, const std::string& chain_pem, const std::string& trust_pem,
                      std::string* error);

/** The first `spiffe://` URI SAN of `cert`, or "" when it has none. */
std::string SpiffeIdOf(X509* cert);

/** The trust domain of a SPIFFE id ("" when it is not one). */
std::string TrustDomainOf(const std::string& spiffe_id);

/** The OpenSSL error queue as one lowercase line (emptied), or `fallback`. */
std::string TakeSslErrors(const std::string& fallback);

}  // namespace ambient::hbone
