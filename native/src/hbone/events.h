// What the engine reports to TypeScript. Every event names the object by its id;
// strings are copied (the engine's threads never touch JS values).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ambient::hbone {

enum class EventType : uint8_t {
  kSessionReady = 1,    // client session: TLS done, server SETTINGS arrived; count = peer's max streams
  kSessionGoaway = 2,   // client session: the server sent GOAWAY (no new streams)
  kSessionClosed = 3,   // any session: gone; err/message say why when it failed
  kServerSession = 4,   // server: a client passed TLS; fields: peer identity, peer ip, local ip; ports in count/status
  kRejected = 5,        // server: a connection refused before HTTP/2; fields: reason, peer ip; status = peer port
  kRequest = 6,         // server: a CONNECT request; fields: method, authority, forwarded, baggage, traceparent
  kResponse = 7,        // client tunnel: the server's status
  kDelivered = 8,       // server tunnel: upstream connected and 200 sent
  kDeliveryFailed = 9,  // server tunnel: the upstream connect failed (err)
  kTunnelClosed = 10,   // any tunnel: over; counters, status, h2 error code, plain-side errno
  kServerClosed = 11,   // server: listener and all its sessions closed
};

/** kRequest's `status` bits: which optional headers were present. */
constexpr int32_t kHasForwarded = 1;
constexpr int32_t kHasBaggage = 2;
constexpr int32_t kHasTraceparent = 4;

struct Event {
  EventType type;
  uint64_t id = 0;     // session, tunnel or server
  uint64_t owner = 0;  // the session of a tunnel, the server of a session
  int32_t status = 0;
  int32_t err = 0;    // errno of a plain-side failure
  uint32_t code = 0;  // HTTP/2 error code (RST_STREAM / GOAWAY)
  uint64_t count = 0;
  uint64_t received = 0;  // tunnel: bytes from the HTTP/2 stream written to the plain socket
  uint64_t sent = 0;      // tunnel: bytes read from the plain socket into the HTTP/2 stream
  std::string message;
  std::vector<std::string> fields;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  /** Called from the I/O threads. */
  virtual void Emit(Event&& event) = 0;
};

}  // namespace ambient::hbone
