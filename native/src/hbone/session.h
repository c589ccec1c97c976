// One HBONE connection: a TCP socket, TLS 1.3 over it (OpenSSL with in-memory
// BIOs, so ciphertext moves in large reads and one write per batch) and an HTTP/2
// session (nghttp2) carrying CONNECT streams, each relayed to a plain TCP socket
// by a Tunnel. Lives on one Loop; every method runs on that loop's thread.
// Without an SSL object (fuzzing) the wire carries HTTP/2 in the clear.
#pragma once
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "buffer.h"
#include "events.h"
#include "loop.h"

namespace ambient::hbone {

class Session;
class Tunnel;

/** The engine side of a session: ids, events, the tables commands look things up in. */
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual void Emit(Event&& event) = 0;
  virtual uint64_t NewTunnelId() = 0;
  virtual void TunnelAdded(Tunnel*) {}
  virtual void TunnelRemoved(Tunnel*) {}
  virtual void SessionRemoved(Session*) {}
};

struct SessionConfig {
  uint32_t stream_window = 4 * 1024 * 1024;
  uint32_t connection_window = 16 * 1024 * 1024;
  uint32_t max_frame_size = 1024 * 1024;
  uint32_t max_concurrent_streams = 1000;
  int handshake_timeout_ms = 10000;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class Session : public Pollable {
 public:
  enum class Role { kClient, kServer };

  /** Takes `fd` (may be -1: no socket, for fuzzing) and `ssl` (may be null: cleartext). */
  Session(SessionHost* host, Loop* loop, Role role, uint64_t id, uint64_t owner, int fd, SSL* ssl, const SessionConfig& config);
  ~Session() override;

  uint64_t id() const { return id_; }
  uint64_t owner() const { return owner_; }
  Role role() const { return role_; }
  Loop* loop() const { return loop_; }
  SessionHost* host() const { return host_; }
  nghttp2_session* h2() const { return h2_; }
  bool closed() const { return closed_; }

  /** Client: connect `fd` to `addr` without blocking, then handshake; the server must prove `expected_identity`. */
  void StartClient(const sockaddr_storage& addr, socklen_t len, std::string expected_identity);
  /** Server: an accepted socket; the client certificate must carry a SPIFFE id of `trust_domain`. */
  void StartServer(std::string trust_domain);
  /** The TCP peer and local addresses, for the server's events. */
  void SetAddresses(std::string peer_ip, int peer_port, std::string local_ip, int local_port) {
    peer_ip_ = std::move(peer_ip), peer_port_ = peer_port, local_ip_ = std::move(local_ip), local_port_ = local_port;
  }
  /** Fuzzing: no socket, no TLS; the HTTP/2 session starts at once. */
  void StartCleartext();

  /** Bytes as they came off the socket (also the fuzzers' entry point). */
  void FeedWire(const uint8_t* data, size_t len);
  /** The peer closed its side of the TCP connection. */
  void FeedEof();

  /** Client: a CONNECT stream relayed to `plain_fd` once the server answers 200. Null with `error` set. */
  Tunnel* OpenStream(uint64_t tunnel_id, int plain_fd, const std::string& authority, const HeaderList& headers, std::string* error);
  /** Server: answers a request (200 starts the relay; the tunnel decides when). */
  int Respond(Tunnel* tunnel, int status, bool with_data);
  /** Graceful: GOAWAY, then close once the peer is done; otherwise at once, resetting every tunnel. */
  void Close(bool graceful, const std::string& why);
  /** Server drain: a GOAWAY shutdown notice, so the peer opens no new streams here (none in flight is
   *  refused); the open ones go on until they end or Close(false) cuts them. */
  void Drain();

  /** Sends what HTTP/2 has queued (frames, window updates, data the tunnels have). */
  void Pump();
  /** A tunnel wrote `n` bytes of a stream's data to its socket: open the windows by as much. */
  void Consumed(Tunnel* tunnel, size_t n);
  /** A tunnel whose plain socket may be read again once its buffer drains. */
  void WantsRefill(Tunnel* tunnel);
  void Forget(Tunnel* tunnel);

  void OnPoll(uint32_t events) override;
  void OnTick(int64_t now_ms) override;

  // nghttp2 callbacks (static trampolines in session.cc call these).
  int OnBeginHeaders(const nghttp2_frame* frame);
  int OnHeader(const nghttp2_frame* frame, const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen);
  int OnFrameRecv(const nghttp2_frame* frame);
  int OnFrameSend(const nghttp2_frame* frame);
  int OnDataChunk(int32_t stream_id, const uint8_t* data, size_t len);
  int OnStreamClose(int32_t stream_id, uint32_t error_code);
  ssize_t OnSend(const uint8_t* data, size_t length);
  int OnSendData(nghttp2_frame* frame, const uint8_t* framehd, size_t length, Tunnel* tunnel);

  // The wire BIO (session.cc).
  ByteQueue& wire_in() { return wire_in_; }
  ByteQueue& wire_out() { return wire_out_; }
  bool wire_eof() const { return wire_eof_; }

 private:
  void Fail(const std::string& why, int err = 0);
  void Handshake();
  bool VerifyPeer();
  bool StartHttp2();
  void ReadApplication();
  void Flush();
  bool WireFull() const;
  void MaybeFinishClose();
  Tunnel* Find(int32_t stream_id) const;

  SessionHost* host_;
  Loop* loop_;
  const Role role_;
  const uint64_t id_;
  const uint64_t owner_;
  int fd_;
  SSL* ssl_;
  SessionConfig config_;
  nghttp2_session* h2_ = nullptr;
  std::string expected_identity_;
  std::string trust_domain_;
  std::string peer_identity_;
  std::string peer_ip_, local_ip_;
  int peer_port_ = 0, local_port_ = 0;

  ByteQueue wire_in_;
  ByteQueue wire_out_;
  ByteQueue plain_out_;
  bool wire_eof_ = false;
  bool connecting_ = false;
  bool handshaking_ = false;
  bool ready_ = false;
  bool closing_ = false;
  bool drain_pending_ = false;
  bool closed_ = false;
  bool pumping_ = false;
  bool blocked_ = false;  // a send callback found the wire full
  int64_t deadline_ms_ = 0;
  std::unordered_map<int32_t, Tunnel*> tunnels_;
  std::vector<Tunnel*> consumed_;
  std::vector<Tunnel*> refill_;
};

}  // namespace ambient::hbone
