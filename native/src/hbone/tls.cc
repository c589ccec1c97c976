#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstring>
#include <memory>

namespace ambient::hbone {

namespace {
const unsigned char kAlpnH2[] = {2, 'h', '2'};

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr MemBio(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

int SelectH2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnH2, sizeof(kAlpnH2), in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

SSL_CTX* Fail(SSL_CTX* ctx, std::string* error, const std::string& what) {
  *error = TakeSslErrors(what);
  if (error->rfind(what, 0) != 0) *error = what + ": " + *error;
  SSL_CTX_free(ctx);
  return nullptr;
}
}  // namespace

std::string TakeSslErrors(const std::string& fallback) {
  std::string out;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    const char* reason = ERR_reason_error_string(code);
    if (!out.empty()) out += "; ";
    out += reason ? reason : buf;
  }
  if (out.empty()) return fallback;
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

SSL_CTX* BuildContext(TlsRole role, const std::string& key_pem, const std::string& chain_pem, const std::string& trust_pem,
                      std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(role == TlsRole::kServer ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) {
    *error = TakeSslErrors("SSL_CTX_new failed");
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // Bigger reads: a record header and body in one syscall, several records per read.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
  // The wire BIO takes every byte, so each SSL_write encrypts the whole batch at once.
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (role == TlsRole::kServer) {
    // HBONE clients keep sessions open and pooled: resumption tickets are wasted work.
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_alpn_select_cb(ctx, SelectH2, nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    if (SSL_CTX_set_alpn_protos(ctx, kAlpnH2, sizeof(kAlpnH2)) != 0) return Fail(ctx, error, "alpn");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }

  BioPtr chain = MemBio(chain_pem);
  X509* leaf = chain ? PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr) : nullptr;
  if (leaf == nullptr) return Fail(ctx, error, "certificate chain has no pem certificate");
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (ok != 1) return Fail(ctx, error, "certificate not usable");
  for (;;) {
    X509* extra = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr);
    if (extra == nullptr) break;
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
      X509_free(extra);
      return Fail(ctx, error, "intermediate certificate not usable");
    }
  }
  ERR_clear_error();  // the end of the PEM stream

  BioPtr key_bio = MemBio(key_pem);
  EVP_PKEY* key = key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (key == nullptr) return Fail(ctx, error, "private key is not a pem key");
  ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) return Fail(ctx, error, "private key does not match the certificate");

  BioPtr trust = MemBio(trust_pem);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int roots = 0;
  for (;;) {
    X509* root = trust ? PEM_read_bio_X509(trust.get(), nullptr, nullptr, nullptr) : nullptr;
    if (root == nullptr) break;
    ok = X509_STORE_add_cert(store, root);
    X509_free(root);
    if (ok != 1) return Fail(ctx, error, "trust bundle certificate not usable");
    roots++;
  }
  ERR_clear_error();
  if (roots == 0) return Fail(ctx, error, "trust bundle has no pem certificate");
  return ctx;
}

std::string SpiffeIdOf(X509* cert) {
  if (cert == nullptr) return "";
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return "";
  std::string found;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && found.empty(); i++) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)), static_cast<size_t>(ASN1_STRING_length(uri)));
    if (value.rfind("spiffe://", 0) == 0 && value.find('\0') == std::string::npos) found = value;
  }
  GENERAL_NAMES_free(names);
  return found;
}

std::string TrustDomainOf(const std::string& id) {
  const std::string scheme = "spiffe://";
  if (id.rfind(scheme, 0) != 0) return "";
  size_t slash = id.find('/', scheme.size());
  std::string domain = id.substr(scheme.size(), slash == std::string::npos ? std::string::npos : slash - scheme.size());
  return domain;
}

}  // namespace ambient::hbone
