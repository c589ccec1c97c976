// libFuzzer target: bytes from an HBONE client, in the clear (TLS is not in the
// way), into a server session: nghttp2's frame parser and every callback of ours
// (requests, data before and after a decision, END_STREAM, RST_STREAM, GOAWAY,
// window updates). Requests are answered between chunks the way TypeScript does:
// refused, reset, or left waiting.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "harness.h"

using namespace ambient::hbone;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::RecordingHost host;
  Loop& loop = fuzz::FuzzLoop();
  SessionConfig config;
  config.stream_window = 65535;
  config.connection_window = 1 << 20;
  auto* session = new Session(&host, &loop, Session::Role::kServer, 1, 1, -1, nullptr, config);
  session->StartCleartext();
  size_t chunk = size > 0 ? (data[0] % 64) + 1 : 1;
  int answer = 0;
  for (size_t off = 0; off < size && !session->closed(); off += chunk) {
    session->FeedWire(data + off, size - off < chunk ? size - off : chunk);
    std::vector<uint64_t> requests;
    for (auto& ev : host.events)
      if (ev.type == EventType::kRequest) requests.push_back(ev.id);
    host.events.clear();
    for (uint64_t id : requests) {
      auto it = host.tunnels.find(id);
      if (it == host.tunnels.end()) continue;
      switch (answer++ % 3) {
        case 0: it->second->Reject(401); break;
        case 1: it->second->Reset("fuzz"); break;
        default: break;  // still deciding
      }
      if (session->closed()) break;
    }
    host.events.clear();
  }
  if (!session->closed()) session->Close(false, "fuzz done");
  loop.CollectGarbage();
  return 0;
}
