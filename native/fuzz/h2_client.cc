// libFuzzer target: bytes from an HBONE server, in the clear, into a client
// session that opens CONNECT streams relayed to socket pairs once it is ready:
// SETTINGS, responses (200 starts a relay), DATA with and without END_STREAM,
// resets, GOAWAY and flow control as a hostile server could send them.
#include <sys/socket.h>
#include <unistd.h>

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
  auto* session = new Session(&host, &loop, Session::Role::kClient, 1, 0, -1, nullptr, config);
  session->StartCleartext();
  std::vector<int> peers;
  bool ready = false;
  int opened = 0;
  size_t chunk = size > 0 ? (data[0] % 64) + 1 : 1;
  for (size_t off = 0; off < size && !session->closed(); off += chunk) {
    session->FeedWire(data + off, size - off < chunk ? size - off : chunk);
    for (auto& ev : host.events)
      if (ev.type == EventType::kSessionReady) ready = true;
    host.events.clear();
    if (ready && opened < 3 && !session->closed()) {
      int pair[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) break;
      peers.push_back(pair[1]);
      std::string error;
      HeaderList headers = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
      if (session->OpenStream(host.NewTunnelId(), pair[0], "10.0.0.1:8080", headers, &error) == nullptr) close(pair[0]);
      else if (write(pair[1], "hello", 5) < 0) break;
      opened++;
    }
  }
  if (!session->closed()) session->Close(false, "fuzz done");
  loop.CollectGarbage();
  for (int fd : peers) close(fd);
  return 0;
}
