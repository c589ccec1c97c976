// libFuzzer target: DER certificates (what a peer presents) into the SPIFFE id
// and trust-domain extraction the engine uses to report and check identities.
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>

#include "../src/hbone/tls.h"

using namespace ambient::hbone;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const unsigned char* p = data;
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(size));
  if (cert != nullptr) {
    std::string id = SpiffeIdOf(cert);
    (void)TrustDomainOf(id);
    X509_free(cert);
  }
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)TrustDomainOf(text);
  return 0;
}
