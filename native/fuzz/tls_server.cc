// libFuzzer target: bytes from a TLS client into a server session with a real
// TLS 1.3 context (ClientHello parsing, alerts, records before and after the
// handshake), through the session's wire BIO, handshake and verification code.
#include <cstddef>
#include <cstdint>
#include <string>

#include "../src/hbone/tls.h"
#include "fuzz-certs.h"
#include "harness.h"

using namespace ambient::hbone;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static SSL_CTX* ctx = [] {
    std::string error;
    SSL_CTX* c = BuildContext(TlsRole::kServer, kFuzzKeyPem, kFuzzCertPem, kFuzzCertPem, &error);
    if (c == nullptr) __builtin_trap();
    return c;
  }();
  fuzz::RecordingHost host;
  Loop& loop = fuzz::FuzzLoop();
  SSL* ssl = SSL_new(ctx);
  auto* session = new Session(&host, &loop, Session::Role::kServer, 1, 1, -1, ssl, SessionConfig{});
  session->StartServer("cluster.local");
  size_t chunk = size > 0 ? (data[0] % 200) + 1 : 1;
  for (size_t off = 0; off < size && !session->closed(); off += chunk)
    session->FeedWire(data + off, size - off < chunk ? size - off : chunk);
  if (!session->closed()) session->FeedEof();
  loop.CollectGarbage();
  return 0;
}
