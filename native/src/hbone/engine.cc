#include "engine.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ambient::hbone {

namespace {
std::string IpOf(const sockaddr_storage& ss, int* port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    *port = ntohs(a->sin6_port);
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    *port = ntohs(a->sin_port);
  }
  std::string ip(buf);
  if (ip.rfind("::ffff:", 0) == 0 && ip.find('.') != std::string::npos) ip = ip.substr(7);
  return ip;
}

void CloseHard(int fd) {
  linger hard{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  close(fd);
}
}  // namespace

/** What a server's sessions share: the current context (rotated) and the trust domain. */
struct ServerShared {
  std::mutex mu;
  SSL_CTX* ctx = nullptr;
  std::string trust_domain;
  ~ServerShared() {
    if (ctx != nullptr) SSL_CTX_free(ctx);
  }
  SSL* NewSsl() {
    std::lock_guard<std::mutex> lock(mu);
    return SSL_new(ctx);
  }
  void Replace(SSL_CTX* next) {
    std::lock_guard<std::mutex> lock(mu);
    SSL_CTX_up_ref(next);
    if (ctx != nullptr) SSL_CTX_free(ctx);
    ctx = next;
  }
};

/** A listening socket whose connections become server sessions, spread over the loops. */
class Listener : public Pollable {
 public:
  Listener(Engine* engine, LoopState* home, uint64_t id, int fd, std::shared_ptr<ServerShared> shared)
      : engine_(engine), home_(home), id_(id), fd_(fd), shared_(std::move(shared)) {}
  ~Listener() override {
    if (fd_ >= 0) close(fd_);
  }
  const std::shared_ptr<ServerShared>& shared() const { return shared_; }

  void Close() {
    if (fd_ < 0) return;
    home_->loop().Remove(fd_);
    close(fd_);
    fd_ = -1;
    home_->listeners.erase(id_);
    home_->loop().Retire(this);
  }

  void OnPoll(uint32_t events) override {
    if (fd_ < 0 || !(events & EPOLLIN)) return;
    for (;;) {
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      int fd = accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN, or out of descriptors (the next edge tries again)
      }
      sockaddr_storage local{};
      len = sizeof(local);
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
      int peer_port = 0, local_port = 0;
      std::string peer_ip = IpOf(peer, &peer_port), local_ip = IpOf(local, &local_port);
      SSL* ssl = shared_->NewSsl();
      if (ssl == nullptr) {
        close(fd);
        continue;
      }
      LoopState* target = engine_->NextLoop();
      uint64_t session_id = engine_->NextId(target->loop().index());
      std::string trust_domain = shared_->trust_domain;
      uint64_t server = id_;
      Engine* engine = engine_;
      auto start = [=]() {
        auto* s = new Session(target, &target->loop(), Session::Role::kServer, session_id, server, fd, ssl,
                              engine->session_config());
        target->sessions[session_id] = s;
        engine->SessionOpened();
        s->SetAddresses(peer_ip, peer_port, local_ip, local_port);
        s->StartServer(trust_domain);
      };
      if (target == home_) start();
      else target->loop().Post(start);
    }
  }

 private:
  Engine* engine_;
  LoopState* home_;
  uint64_t id_;
  int fd_;
  std::shared_ptr<ServerShared> shared_;
};

void LoopState::Emit(Event&& event) { engine_->Emit(std::move(event)); }
uint64_t LoopState::NewTunnelId() { return engine_->NextId(loop_.index()); }
void LoopState::TunnelAdded(Tunnel* t) {
  tunnels[t->id()] = t;
  engine_->TunnelOpened(t);
}
void LoopState::TunnelRemoved(Tunnel* t) {
  tunnels.erase(t->id());
  engine_->TunnelClosed(t);
}
void LoopState::SessionRemoved(Session* s) {
  sessions.erase(s->id());
  engine_->SessionClosed();
}

Engine::Engine(const EngineOptions& options, EventSink* sink) : options_(options), sink_(sink) {
  int threads = options.threads < 1 ? 1 : options.threads > 64 ? 64 : options.threads;
  for (int i = 0; i < threads; i++) loops_.push_back(std::make_unique<LoopState>(this, i));
}

Engine::~Engine() {
  Stop();
  for (auto& entry : contexts_) SSL_CTX_free(entry.second);
}

bool Engine::Start(std::string* error) {
  for (auto& l : loops_)
    if (!l->loop().Start(error)) {
      Stop();
      return false;
    }
  started_ = true;
  return true;
}

void Engine::Stop() {
  for (auto& l : loops_) {
    LoopState* state = l.get();
    state->loop().Stop([state]() {
      std::vector<Session*> sessions;
      for (auto& entry : state->sessions) sessions.push_back(entry.second);
      for (Session* s : sessions) s->Close(false, "engine stopped");
      std::vector<Listener*> listeners;
      for (auto& entry : state->listeners) listeners.push_back(entry.second);
      for (Listener* l : listeners) l->Close();
    });
  }
  started_ = false;
}

uint64_t Engine::AddContext(TlsRole role, const std::string& key, const std::string& chain, const std::string& trust,
                            std::string* error) {
  SSL_CTX* ctx = BuildContext(role, key, chain, trust, error);
  if (ctx == nullptr) return 0;
  uint64_t id = next_id_.fetch_add(1);
  std::lock_guard<std::mutex> lock(mu_);
  contexts_[id] = ctx;
  return id;
}

bool Engine::ReleaseContext(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = contexts_.find(id);
  if (it == contexts_.end()) return false;
  SSL_CTX_free(it->second);  // sessions and servers using it hold their own references
  contexts_.erase(it);
  return true;
}

SSL* Engine::NewSsl(uint64_t context) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = contexts_.find(context);
  return it == contexts_.end() ? nullptr : SSL_new(it->second);
}

uint64_t Engine::Listen(int fd, uint64_t context, const std::string& trust_domain, std::string* error) {
  auto shared = std::make_shared<ServerShared>();
  shared->trust_domain = trust_domain;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = contexts_.find(context);
    if (it == contexts_.end()) {
      *error = "no tls context " + std::to_string(context);
      return 0;
    }
    shared->Replace(it->second);
  }
  LoopState* home = NextLoop();
  uint64_t id = NextId(home->loop().index());
  home->loop().Post([this, home, id, fd, shared]() {
    auto* listener = new Listener(this, home, id, fd, shared);
    home->listeners[id] = listener;
    int err = home->loop().Add(fd, listener);
    if (err != 0) {
      Event ev{EventType::kServerClosed};
      ev.id = id;
      ev.err = err;
      ev.message = std::string("cannot watch the listening socket: ") + strerror(err);
      Emit(std::move(ev));
      listener->Close();
    }
  });
  return id;
}

bool Engine::SetServerContext(uint64_t server, uint64_t context, std::string* error) {
  SSL_CTX* ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = contexts_.find(context);
    if (it == contexts_.end()) {
      *error = "no tls context " + std::to_string(context);
      return false;
    }
    ctx = it->second;
    SSL_CTX_up_ref(ctx);
  }
  LoopState* home = LoopOf(server);
  home->loop().Post([home, server, ctx]() {
    auto it = home->listeners.find(server);
    if (it != home->listeners.end()) it->second->shared()->Replace(ctx);
    SSL_CTX_free(ctx);
  });
  return true;
}

void Engine::CloseServer(uint64_t server, bool drain) {
  LoopState* home = LoopOf(server);
  auto remaining = std::make_shared<std::atomic<int>>(static_cast<int>(loops_.size()));
  home->loop().Post([this, home, server, remaining, drain]() {
    auto it = home->listeners.find(server);
    if (it != home->listeners.end()) it->second->Close();
    // Then every loop closes this server's sessions; the last one reports.
    for (auto& l : loops_) {
      LoopState* state = l.get();
      state->loop().Post([this, state, server, remaining, drain]() {
        std::vector<Session*> mine;
        for (auto& entry : state->sessions)
          if (entry.second->owner() == server) mine.push_back(entry.second);
        for (Session* s : mine) {
          if (drain) s->Drain();
          else s->Close(false, "server stopped");
        }
        if (remaining->fetch_sub(1) == 1) {
          Event ev{EventType::kServerClosed};
          ev.id = server;
          Emit(std::move(ev));
        }
      });
    }
  });
}

uint64_t Engine::OpenSession(int fd, const sockaddr_storage& addr, socklen_t len, uint64_t context, const std::string& expected,
                             std::string* error) {
  SSL* ssl = NewSsl(context);
  if (ssl == nullptr) {
    *error = "no tls context " + std::to_string(context);
    return 0;
  }
  LoopState* state = NextLoop();
  uint64_t id = NextId(state->loop().index());
  state->loop().Post([this, state, id, fd, ssl, addr, len, expected]() {
    auto* s = new Session(state, &state->loop(), Session::Role::kClient, id, 0, fd, ssl, options_.session);
    state->sessions[id] = s;
    SessionOpened();
    s->StartClient(addr, len, expected);
  });
  return id;
}

void Engine::CloseSession(uint64_t session, bool graceful) {
  LoopState* state = LoopOf(session);
  state->loop().Post([state, session, graceful]() {
    auto it = state->sessions.find(session);
    if (it != state->sessions.end()) it->second->Close(graceful, "closed by request");
  });
}

uint64_t Engine::OpenStream(uint64_t session, int plain_fd, const std::string& authority, const HeaderList& headers) {
  LoopState* state = LoopOf(session);
  uint64_t id = NextId(state->loop().index());
  state->loop().Post([this, state, session, id, plain_fd, authority, headers]() {
    auto it = state->sessions.find(session);
    std::string error = "session is closed";
    Tunnel* t = it == state->sessions.end() ? nullptr : it->second->OpenStream(id, plain_fd, authority, headers, &error);
    if (t != nullptr) return;
    CloseHard(plain_fd);
    Event ev{EventType::kTunnelClosed};
    ev.id = id;
    ev.owner = session;
    ev.message = error;
    Emit(std::move(ev));
  });
  return id;
}

void Engine::Deliver(uint64_t tunnel, int fd, const sockaddr_storage& addr, socklen_t len) {
  LoopState* state = LoopOf(tunnel);
  state->loop().Post([state, tunnel, fd, addr, len]() {
    auto it = state->tunnels.find(tunnel);
    if (it == state->tunnels.end()) return (void)close(fd);
    it->second->Deliver(fd, addr, len);
  });
}

void Engine::Reject(uint64_t tunnel, int status) {
  LoopState* state = LoopOf(tunnel);
  state->loop().Post([state, tunnel, status]() {
    auto it = state->tunnels.find(tunnel);
    if (it != state->tunnels.end()) it->second->Reject(status);
  });
}

void Engine::Reset(uint64_t tunnel) {
  LoopState* state = LoopOf(tunnel);
  state->loop().Post([state, tunnel]() {
    auto it = state->tunnels.find(tunnel);
    if (it != state->tunnels.end()) it->second->Reset("reset by request");
  });
}

void Engine::TunnelOpened(Tunnel* t) {
  tunnels_.fetch_add(1);
  tunnels_total_.fetch_add(1);
  std::lock_guard<std::mutex> lock(mu_);
  counters_[t->id()] = t->counters();
}

void Engine::TunnelClosed(Tunnel* t) {
  tunnels_.fetch_sub(1);
  bytes_received_.fetch_add(t->counters()->received.load());
  bytes_sent_.fetch_add(t->counters()->sent.load());
  std::lock_guard<std::mutex> lock(mu_);
  counters_.erase(t->id());
}

bool Engine::Counters(uint64_t tunnel, uint64_t* received, uint64_t* sent) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counters_.find(tunnel);
  if (it == counters_.end()) return false;
  *received = it->second->received.load();
  *sent = it->second->sent.load();
  return true;
}

EngineStats Engine::Stats() {
  EngineStats s;
  s.sessions = sessions_.load();
  s.tunnels = tunnels_.load();
  s.sessions_total = sessions_total_.load();
  s.tunnels_total = tunnels_total_.load();
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t live_received = 0, live_sent = 0;
  for (auto& entry : counters_) live_received += entry.second->received.load(), live_sent += entry.second->sent.load();
  s.bytes_received = bytes_received_.load() + live_received;
  s.bytes_sent = bytes_sent_.load() + live_sent;
  return s;
}

}  // namespace ambient::hbone
