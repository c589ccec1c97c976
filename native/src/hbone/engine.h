// The native HBONE engine: I/O threads (Loop) that own HBONE sessions, server
// listeners and tunnels, driven by commands from TypeScript and reporting through
// an EventSink. It holds no policy: TypeScript chooses sessions, identities and
// answers. Ids carry the index of the loop that owns the object in their low byte.
#pragma once
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "events.h"
#include "loop.h"
#include "session.h"
#include "tls.h"
#include "tunnel.h"

namespace ambient::hbone {

struct EngineOptions {
  int threads = 1;
  SessionConfig session;
};

struct EngineStats {
  uint64_t sessions = 0;
  uint64_t tunnels = 0;
  uint64_t sessions_total = 0;
  uint64_t tunnels_total = 0;
  uint64_t bytes_received = 0;  // stream -> socket, closed tunnels
  uint64_t bytes_sent = 0;      // socket -> stream, closed tunnels
};

class Engine;
class Listener;

/** One loop's tables, and the SessionHost of the sessions on it. */
class LoopState : public SessionHost {
 public:
  LoopState(Engine* engine, int index) : engine_(engine), loop_(index) {}
  Loop& loop() { return loop_; }
  void Emit(Event&& event) override;
  uint64_t NewTunnelId() override;
  void TunnelAdded(Tunnel* t) override;
  void TunnelRemoved(Tunnel* t) override;
  void SessionRemoved(Session* s) override;

  std::unordered_map<uint64_t, Session*> sessions;
  std::unordered_map<uint64_t, Tunnel*> tunnels;
  std::unordered_map<uint64_t, Listener*> listeners;

 private:
  Engine* engine_;
  Loop loop_;
};

class Engine {
 public:
  Engine(const EngineOptions& options, EventSink* sink);
  ~Engine();
  bool Start(std::string* error);
  /** Closes everything (no graceful ends) and joins the threads. */
  void Stop();

  // Any thread (the JS thread calls these).
  uint64_t AddContext(TlsRole role, const std::string& key, const std::string& chain, const std::string& trust, std::string* error);
  bool ReleaseContext(uint64_t id);
  uint64_t Listen(int fd, uint64_t context, const std::string& trust_domain, std::string* error);
  bool SetServerContext(uint64_t server, uint64_t context, std::string* error);
  /** Stops listening; its sessions are closed at once, or with `drain` told GOAWAY and left to finish. */
  void CloseServer(uint64_t server, bool drain);
  uint64_t OpenSession(int fd, const sockaddr_storage& addr, socklen_t len, uint64_t context, const std::string& expected,
                       std::string* error);
  void CloseSession(uint64_t session, bool graceful);
  uint64_t OpenStream(uint64_t session, int plain_fd, const std::string& authority, const HeaderList& headers);
  void Deliver(uint64_t tunnel, int fd, const sockaddr_storage& addr, socklen_t len);
  void Reject(uint64_t tunnel, int status);
  void Reset(uint64_t tunnel);
  /** Live counters of an open tunnel; false when it is not open. */
  bool Counters(uint64_t tunnel, uint64_t* received, uint64_t* sent);
  EngineStats Stats();

  // Loop threads.
  void Emit(Event&& event) { sink_->Emit(std::move(event)); }
  uint64_t NextId(int loop) { return (next_id_.fetch_add(1) << 8) | static_cast<uint64_t>(loop); }
  LoopState* NextLoop() { return loops_[static_cast<size_t>(round_robin_.fetch_add(1)) % loops_.size()].get(); }
  LoopState* LoopOf(uint64_t id) { return loops_[(id & 0xff) % loops_.size()].get(); }
  void TunnelOpened(Tunnel* t);
  void TunnelClosed(Tunnel* t);
  void SessionOpened() { sessions_.fetch_add(1), sessions_total_.fetch_add(1); }
  void SessionClosed() { sessions_.fetch_sub(1); }
  const SessionConfig& session_config() const { return options_.session; }
  /** A new SSL for the context (reference held by the SSL), or null. */
  SSL* NewSsl(uint64_t context);

 private:
  EngineOptions options_;
  EventSink* sink_;
  std::vector<std::unique_ptr<LoopState>> loops_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> round_robin_{0};
  std::mutex mu_;  // contexts_, counters_
  std::unordered_map<uint64_t, SSL_CTX*> contexts_;
  std::unordered_map<uint64_t, std::shared_ptr<TunnelCounters>> counters_;
  std::atomic<uint64_t> sessions_{0}, sessions_total_{0}, tunnels_{0}, tunnels_total_{0};
  std::atomic<uint64_t> bytes_received_{0}, bytes_sent_{0};
  bool started_ = false;
};

}  // namespace ambient::hbone
