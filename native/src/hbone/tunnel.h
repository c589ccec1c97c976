// One CONNECT stream and the plain TCP socket it is relayed to (RFC 9113 §8.5):
// DATA <-> bytes with HTTP/2 flow control (a window opens only as the socket takes
// the bytes), END_STREAM <-> FIN (half-close), RST_STREAM <-> TCP reset. Owned by
// its Session; retired on its loop once both the stream and the socket are done.
#pragma once
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "buffer.h"
#include "loop.h"

namespace ambient::hbone {

class Session;

/** Byte counters readable from any thread while the tunnel runs. */
struct TunnelCounters {
  std::atomic<uint64_t> received{0};  // stream -> socket
  std::atomic<uint64_t> sent{0};      // socket -> stream
};

class Tunnel : public Pollable {
 public:
  Tunnel(Session* session, uint64_t id, int32_t stream_id);
  ~Tunnel() override;

  uint64_t id() const { return id_; }
  int32_t stream_id() const { return stream_id_; }
  void set_stream_id(int32_t id) { stream_id_ = id; }
  const std::shared_ptr<TunnelCounters>& counters() const { return counters_; }
  bool finished() const { return finished_; }
  bool awaiting_decision() const { return awaiting_decision_; }
  bool stream_open() const { return stream_open_; }

  // Request headers (server) and the response status (client).
  std::string method, authority, forwarded, baggage, traceparent;
  int32_t present = 0;
  int status = 0;

  /** Client: the plain socket (already connected: the application's), relayed after a 200. */
  void SetPlain(int fd) { fd_ = fd; }
  /** Client: the server's final response. */
  void OnResponse();
  /** Server: the request is complete; TypeScript decides. */
  void OnRequestComplete();
  /** Server: connect `fd` to the target; 200 and the relay once connected. */
  void Deliver(int fd, const sockaddr_storage& addr, socklen_t len);
  /** Server: answer `status` and end the stream. */
  void Reject(int status);
  /** Reset both sides (policy change, stop). */
  void Reset(const std::string& why);

  // From the session's HTTP/2 callbacks.
  void OnData(const uint8_t* data, size_t len);
  void OnPeerEnd();
  void OnEndSent();
  void OnStreamClosed(uint32_t code);
  /** The session went away: the stream is gone with it. */
  void OnSessionGone(const std::string& why);
  ssize_t ProvideData(size_t length, uint32_t* flags);
  void TakeData(size_t n);
  size_t TakePendingConsume() {
    size_t n = pending_consume_;
    pending_consume_ = 0;
    return n;
  }
  const uint8_t* up_data() const { return up_.data(); }
  /** Reads the socket again if it has more and the buffer has room. */
  void Refill();

  void OnPoll(uint32_t events) override;
  void OnTick(int64_t now_ms) override;

 private:
  void StartRelay();
  void ReadPlain();
  void FlushDown();
  void PlainFailed(int err, const char* what);
  void AbortPlain();
  void ClosePlain();
  void ResumeIfDeferred();
  void MaybeFinish();

  Session* session_;
  const uint64_t id_;
  int32_t stream_id_;
  int fd_ = -1;
  std::shared_ptr<TunnelCounters> counters_ = std::make_shared<TunnelCounters>();
  ByteQueue up_;    // socket -> stream
  ByteQueue down_;  // stream -> socket
  size_t pending_consume_ = 0;
  bool connecting_ = false;
  int64_t connect_deadline_ms_ = 0;
  bool registered_ = false;
  bool relaying_ = false;
  bool readable_ = false;
  bool hangup_ = false;  // the peer half-closed or failed: read until 0 or an error
  bool writable_ = true;
  bool plain_eof_ = false;
  int plain_error_ = 0;
  bool shut_wr_ = false;
  bool end_sent_ = false;
  bool peer_end_ = false;
  bool stream_open_ = true;
  bool deferred_ = false;
  bool awaiting_decision_ = false;
  bool finished_ = false;
  bool reset_requested_ = false;
  uint32_t rst_code_ = 0;
  std::string error_;
};

/** Bytes a tunnel reads from its socket ahead of the stream. */
constexpr size_t kUpBufferBytes = 256 * 1024;

}  // namespace ambient::hbone
