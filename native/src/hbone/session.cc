#include "session.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "tls.h"
#include "tunnel.h"

namespace ambient::hbone {

namespace {
constexpr size_t kWireReadBytes = 256 * 1024;
// Frames are not generated while this much output waits for the socket.
constexpr size_t kWireHighWater = 1024 * 1024;
constexpr size_t kPlainChunk = 64 * 1024;

Session* Of(void* user_data) { return static_cast<Session*>(user_data); }

// The TLS wire as a BIO over the session's two byte queues.
int WireWrite(BIO* bio, const char* data, int len) {
  auto* s = static_cast<Session*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  s->wire_out().Append(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(len));
  return len;
}

int WireRead(BIO* bio, char* out, int len) {
  auto* s = static_cast<Session*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  ByteQueue& in = s->wire_in();
  if (in.empty()) {
    if (s->wire_eof()) return 0;
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = std::min(in.size(), static_cast<size_t>(len));
  std::memcpy(out, in.data(), n);
  in.Consume(n);
  return static_cast<int>(n);
}

long WireCtrl(BIO* bio, int cmd, long, void*) {
  auto* s = static_cast<Session*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return s ? static_cast<long>(s->wire_in().size()) : 0;
    case BIO_CTRL_WPENDING:
      return 0;
    case BIO_CTRL_EOF:
      return s && s->wire_in().empty() && s->wire_eof();
    default:
      return 0;
  }
}

int WireCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int WireDestroy(BIO*) { return 1; }

BIO_METHOD* WireMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "hbone wire");
    BIO_meth_set_write(m, WireWrite);
    BIO_meth_set_read(m, WireRead);
    BIO_meth_set_ctrl(m, WireCtrl);
    BIO_meth_set_create(m, WireCreate);
    BIO_meth_set_destroy(m, WireDestroy);
    return m;
  }();
  return method;
}

// nghttp2 trampolines.
int CbBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* u) { return Of(u)->OnBeginHeaders(frame); }
int CbHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen, const uint8_t* value,
             size_t valuelen, uint8_t, void* u) {
  return Of(u)->OnHeader(frame, name, namelen, value, valuelen);
}
int CbFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* u) { return Of(u)->OnFrameRecv(frame); }
int CbFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* u) { return Of(u)->OnFrameSend(frame); }
int CbDataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* u) {
  return Of(u)->OnDataChunk(stream_id, data, len);
}
int CbStreamClose(nghttp2_session*, int32_t stream_id, uint32_t code, void* u) { return Of(u)->OnStreamClose(stream_id, code); }
ssize_t CbSend(nghttp2_session*, const uint8_t* data, size_t length, int, void* u) { return Of(u)->OnSend(data, length); }
int CbSendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length, nghttp2_data_source* source,
               void* u) {
  return Of(u)->OnSendData(frame, framehd, length, static_cast<Tunnel*>(source->ptr));
}
ssize_t CbReadLength(nghttp2_session*, uint8_t, int32_t, int32_t session_window, int32_t stream_window,
                     uint32_t remote_max_frame, void*) {
  int64_t n = std::min<int64_t>({session_window, stream_window, remote_max_frame, 256 * 1024});
  return static_cast<ssize_t>(std::max<int64_t>(n, 1));
}

nghttp2_session_callbacks* Callbacks() {
  static nghttp2_session_callbacks* cbs = [] {
    nghttp2_session_callbacks* c;
    nghttp2_session_callbacks_new(&c);
    nghttp2_session_callbacks_set_on_begin_headers_callback(c, CbBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(c, CbHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, CbFrameRecv);
    nghttp2_session_callbacks_set_on_frame_send_callback(c, CbFrameSend);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, CbDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, CbStreamClose);
    nghttp2_session_callbacks_set_send_callback(c, CbSend);
    nghttp2_session_callbacks_set_send_data_callback(c, CbSendData);
    nghttp2_session_callbacks_set_data_source_read_length_callback(c, CbReadLength);
    return c;
  }();
  return cbs;
}

nghttp2_option* Options() {
  static nghttp2_option* opt = [] {
    nghttp2_option* o;
    nghttp2_option_new(&o);
    // Windows open as the plain socket takes the bytes, not as they arrive.
    nghttp2_option_set_no_auto_window_update(o, 1);
    return o;
  }();
  return opt;
}

ssize_t CbProvide(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* flags, nghttp2_data_source* source, void*) {
  return static_cast<Tunnel*>(source->ptr)->ProvideData(length, flags);
}
}  // namespace

Session::Session(SessionHost* host, Loop* loop, Role role, uint64_t id, uint64_t owner, int fd, SSL* ssl,
                 const SessionConfig& config)
    : host_(host), loop_(loop), role_(role), id_(id), owner_(owner), fd_(fd), ssl_(ssl), config_(config) {
  if (ssl_ != nullptr) {
    BIO* bio = BIO_new(WireMethod());
    BIO_set_data(bio, this);
    SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: SSL owns its single reference
  }
}

Session::~Session() {
  if (h2_ != nullptr) nghttp2_session_del(h2_);
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (fd_ >= 0) close(fd_);
}

void Session::StartClient(const sockaddr_storage& addr, socklen_t len, std::string expected_identity) {
  expected_identity_ = std::move(expected_identity);
  SSL_set_connect_state(ssl_);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  deadline_ms_ = NowMs() + config_.handshake_timeout_ms;
  loop_->Watch(this);
  int err = loop_->Add(fd_, this);
  if (err != 0) return Fail("epoll_ctl failed", err);
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
    handshaking_ = true;
    return Handshake();
  }
  if (errno != EINPROGRESS) return Fail("connect failed", errno);
  connecting_ = true;
}

void Session::StartServer(std::string trust_domain) {
  trust_domain_ = std::move(trust_domain);
  SSL_set_accept_state(ssl_);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  deadline_ms_ = NowMs() + config_.handshake_timeout_ms;
  loop_->Watch(this);
  handshaking_ = true;
  if (fd_ < 0) return;  // fuzzing: bytes come from FeedWire
  int err = loop_->Add(fd_, this);
  if (err != 0) return Fail("epoll_ctl failed", err);
}

void Session::StartCleartext() { StartHttp2(); }

void Session::OnTick(int64_t now_ms) {
  if (closed_ || deadline_ms_ == 0 || now_ms < deadline_ms_) return;
  Fail(connecting_ ? "connect timed out" : "tls handshake timed out", ETIMEDOUT);
}

void Session::OnPoll(uint32_t events) {
  if (closed_) return;
  if (connecting_) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return Fail("connect failed", err);
    connecting_ = false;
    handshaking_ = true;
    Handshake();
    if (closed_) return;
  }
  if (events & EPOLLOUT) {
    Flush();
    if (closed_) return;
    // Frames held back while the wire was full go out now.
    if (!WireFull() && !handshaking_) Pump();
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    // Each read is handed on before the next, so memory stays bounded.
    for (;;) {
      ssize_t n = read(fd_, wire_in_.Space(kWireReadBytes), kWireReadBytes);
      if (n > 0) {
        wire_in_.Commit(static_cast<size_t>(n));
        FeedWire(nullptr, 0);
        if (closed_) return;
        // Short read: drained (the next arrival is a new edge), unless a FIN came with this one.
        if (static_cast<size_t>(n) < kWireReadBytes && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) break;
        continue;
      }
      if (n == 0) return FeedEof();
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return Fail("read failed", errno);
    }
    wire_in_.Release();
  }
}

void Session::FeedWire(const uint8_t* data, size_t len) {
  if (closed_) return;
  if (data != nullptr && len > 0) wire_in_.Append(data, len);
  if (ssl_ == nullptr) {
    if (h2_ == nullptr) return;
    while (!wire_in_.empty() && !closed_) {
      size_t n = wire_in_.size();
      ssize_t r = nghttp2_session_mem_recv(h2_, wire_in_.data(), n);
      if (r < 0) return Fail(std::string("http/2 error: ") + nghttp2_strerror(static_cast<int>(r)));
      wire_in_.Consume(static_cast<size_t>(r));
    }
    Pump();
    return;
  }
  if (handshaking_) Handshake();
  if (!closed_ && h2_ != nullptr) ReadApplication();
}

void Session::FeedEof() {
  wire_eof_ = true;
  if (closed_) return;
  if (ready_ || role_ == Role::kServer) Fail(ready_ ? "peer closed the connection" : "peer closed the connection during the handshake");
  else Fail("connection closed before settings (client certificate refused?)");
}

void Session::Handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  Flush();
  if (closed_) return;
  if (r != 1) {
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    std::string why = TakeSslErrors("tls handshake failed");
    if (role_ == Role::kServer) {
      Event ev{EventType::kRejected};
      ev.id = id_;
      ev.owner = owner_;
      ev.fields = {"tls", peer_ip_};
      ev.status = peer_port_;
      ev.message = why;
      host_->Emit(std::move(ev));
    }
    return Fail("tls handshake failed: " + why);
  }
  handshaking_ = false;
  if (!VerifyPeer()) return;
  if (role_ == Role::kServer) {
    deadline_ms_ = 0;
    loop_->Unwatch(this);
  }
  if (!StartHttp2()) return;
  if (role_ == Role::kServer) {
    Event ev{EventType::kServerSession};
    ev.id = id_;
    ev.owner = owner_;
    ev.fields = {peer_identity_, peer_ip_, local_ip_};
    ev.status = peer_port_;
    ev.count = static_cast<uint64_t>(local_port_);
    host_->Emit(std::move(ev));
  }
}

bool Session::VerifyPeer() {
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  bool h2 = alpn_len == 2 && std::memcmp(alpn, "h2", 2) == 0;
  X509* peer = SSL_get1_peer_certificate(ssl_);
  peer_identity_ = SpiffeIdOf(peer);
  X509_free(peer);
  auto reject = [&](const char* reason, const std::string& why) {
    if (role_ == Role::kServer) {
      Event ev{EventType::kRejected};
      ev.id = id_;
      ev.owner = owner_;
      ev.fields = {reason, peer_ip_};
      ev.status = peer_port_;
      ev.message = why;
      host_->Emit(std::move(ev));
    }
    Fail(why);
    return false;
  };
  if (!h2) return reject("alpn", "peer did not negotiate alpn h2");
  if (SSL_get_verify_result(ssl_) != X509_V_OK) return reject("tls", "peer certificate not verified");
  if (role_ == Role::kClient) {
    if (peer_identity_ != expected_identity_)
      return reject("identity", "hbone server identity \"" + peer_identity_ + "\" does not match the destination identity " +
                                    expected_identity_);
    return true;
  }
  if (peer_identity_.empty()) return reject("identity", "client certificate has no spiffe id");
  if (TrustDomainOf(peer_identity_) != trust_domain_)
    return reject("trust_domain", "peer " + peer_identity_ + " is not in trust domain " + trust_domain_);
  return true;
}

bool Session::StartHttp2() {
  int rv = role_ == Role::kClient ? nghttp2_session_client_new2(&h2_, Callbacks(), this, Options())
                                  : nghttp2_session_server_new2(&h2_, Callbacks(), this, Options());
  if (rv != 0) {
    Fail(std::string("nghttp2 session: ") + nghttp2_strerror(rv));
    return false;
  }
  nghttp2_settings_entry settings[3];
  size_t n = 0;
  settings[n++] = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, config_.stream_window};
  settings[n++] = {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, config_.max_frame_size};
  if (role_ == Role::kClient) settings[n++] = {NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
  else settings[n++] = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, config_.max_concurrent_streams};
  nghttp2_submit_settings(h2_, NGHTTP2_FLAG_NONE, settings, n);
  nghttp2_session_set_local_window_size(h2_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(config_.connection_window));
  if (drain_pending_) nghttp2_submit_shutdown_notice(h2_);  // its server began draining during the handshake
  Pump();
  return !closed_;
}

void Session::ReadApplication() {
  static thread_local uint8_t plain[kPlainChunk];
  while (!closed_) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(ssl_, plain, sizeof(plain), &n);
    if (r != 1) {
      int e = SSL_get_error(ssl_, 0);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
      if (e == SSL_ERROR_ZERO_RETURN) {
        wire_eof_ = true;
        FeedEof();
        return;
      }
      return Fail("tls: " + TakeSslErrors("read failed"));
    }
    ssize_t used = nghttp2_session_mem_recv(h2_, plain, n);
    if (used < 0) return Fail(std::string("http/2 error: ") + nghttp2_strerror(static_cast<int>(used)));
  }
  Flush();  // TLS may have answered something (key update)
  if (!closed_) Pump();
}

bool Session::WireFull() const { return wire_out_.size() + plain_out_.size() >= kWireHighWater; }

void Session::Pump() {
  if (closed_ || pumping_ || h2_ == nullptr) return;
  pumping_ = true;
  for (int round = 0; round < 64 && !closed_; round++) {
    for (Tunnel* t : consumed_) {
      size_t n = t->TakePendingConsume();
      if (n > 0) nghttp2_session_consume(h2_, t->stream_id(), n);
    }
    consumed_.clear();
    blocked_ = false;
    int rv = nghttp2_session_send(h2_);
    if (rv != 0) {
      pumping_ = false;
      return Fail(std::string("http/2 send: ") + nghttp2_strerror(rv));
    }
    if (!plain_out_.empty()) {
      if (ssl_ == nullptr) {
        if (fd_ < 0) plain_out_.Consume(plain_out_.size());
        else wire_out_.Append(plain_out_.data(), plain_out_.size()), plain_out_.Consume(plain_out_.size());
      } else {
        while (!plain_out_.empty()) {
          size_t written = 0;
          ERR_clear_error();
          if (SSL_write_ex(ssl_, plain_out_.data(), plain_out_.size(), &written) != 1) {
            pumping_ = false;
            return Fail("tls: " + TakeSslErrors("write failed"));
          }
          plain_out_.Consume(written);
        }
      }
    }
    Flush();
    if (closed_) break;
    // Sockets whose tunnels had a full buffer can be read again now.
    std::vector<Tunnel*> refill;
    refill.swap(refill_);
    for (Tunnel* t : refill) t->Refill();
    if (WireFull()) break;  // EPOLLOUT resumes once the socket drains
    if (refill.empty() && consumed_.empty() && !nghttp2_session_want_write(h2_)) break;
  }
  pumping_ = false;
  if (!closed_) MaybeFinishClose();
}

void Session::MaybeFinishClose() {
  if (h2_ == nullptr || closed_) return;
  if (nghttp2_session_want_read(h2_) || nghttp2_session_want_write(h2_)) return;
  if (!wire_out_.empty()) return;
  Close(false, closing_ ? "" : "http/2 session ended");
}

void Session::Flush() {
  if (fd_ < 0) {
    wire_out_.Consume(wire_out_.size());
    return;
  }
  if (connecting_) return;
  while (!wire_out_.empty()) {
    ssize_t n = write(fd_, wire_out_.data(), wire_out_.size());
    if (n > 0) {
      wire_out_.Consume(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    return Fail("write failed", n < 0 ? errno : EPIPE);
  }
  wire_out_.Release();
}

Tunnel* Session::Find(int32_t stream_id) const {
  auto it = tunnels_.find(stream_id);
  return it == tunnels_.end() ? nullptr : it->second;
}

void Session::Forget(Tunnel* tunnel) {
  auto it = tunnels_.find(tunnel->stream_id());
  if (it != tunnels_.end() && it->second == tunnel) tunnels_.erase(it);
  consumed_.erase(std::remove(consumed_.begin(), consumed_.end(), tunnel), consumed_.end());
  refill_.erase(std::remove(refill_.begin(), refill_.end(), tunnel), refill_.end());
  host_->TunnelRemoved(tunnel);
}

void Session::Consumed(Tunnel* tunnel, size_t) {
  if (std::find(consumed_.begin(), consumed_.end(), tunnel) == consumed_.end()) consumed_.push_back(tunnel);
}

void Session::WantsRefill(Tunnel* tunnel) {
  if (std::find(refill_.begin(), refill_.end(), tunnel) == refill_.end()) refill_.push_back(tunnel);
}

Tunnel* Session::OpenStream(uint64_t tunnel_id, int plain_fd, const std::string& authority, const HeaderList& headers,
                            std::string* error) {
  if (closed_ || closing_ || !ready_ || role_ != Role::kClient) {
    *error = closed_ ? "session is closed" : "session is not ready for streams";
    return nullptr;
  }
  std::vector<nghttp2_nv> nva;
  auto add = [&](const std::string& name, const std::string& value) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                   NGHTTP2_NV_FLAG_NONE});
  };
  static const std::string kMethod = ":method", kConnect = "CONNECT", kAuthority = ":authority";
  add(kMethod, kConnect);
  add(kAuthority, authority);
  for (const auto& h : headers) add(h.first, h.second);
  auto* tunnel = new Tunnel(this, tunnel_id, 0);
  tunnel->SetPlain(plain_fd);
  nghttp2_data_provider provider;
  provider.source.ptr = tunnel;
  provider.read_callback = CbProvide;
  int32_t stream_id = nghttp2_submit_request(h2_, nullptr, nva.data(), nva.size(), &provider, tunnel);
  if (stream_id < 0) {
    *error = std::string("cannot open a stream: ") + nghttp2_strerror(stream_id);
    tunnel->SetPlain(-1);
    delete tunnel;
    return nullptr;
  }
  tunnel->set_stream_id(stream_id);
  tunnels_[stream_id] = tunnel;
  host_->TunnelAdded(tunnel);
  Pump();
  return tunnel;
}

int Session::Respond(Tunnel* tunnel, int status, bool with_data) {
  std::string code = std::to_string(status);
  nghttp2_nv nv = {reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(code.data())), 7, code.size(), NGHTTP2_NV_FLAG_NONE};
  nghttp2_data_provider provider;
  provider.source.ptr = tunnel;
  provider.read_callback = CbProvide;
  // A refusal ends our side with the HEADERS; the reset that stops the client's side
  // follows once they are sent (Tunnel::OnEndSent): queued now, nghttp2 would drop them.
  return nghttp2_submit_response(h2_, tunnel->stream_id(), &nv, 1, with_data ? &provider : nullptr);
}

void Session::Close(bool graceful, const std::string& why) {
  if (closed_) return;
  if (graceful && h2_ != nullptr) {
    closing_ = true;
    nghttp2_session_terminate_session(h2_, NGHTTP2_NO_ERROR);
    Pump();
    return;
  }
  closed_ = true;
  loop_->Unwatch(this);
  std::vector<Tunnel*> open;
  for (auto& entry : tunnels_) open.push_back(entry.second);
  for (Tunnel* t : open) t->OnSessionGone(why.empty() ? "session closed" : why);
  tunnels_.clear();
  if (fd_ >= 0) {
    if (ssl_ != nullptr && ready_ && !wire_eof_) {
      SSL_shutdown(ssl_);  // close_notify, best effort
      while (!wire_out_.empty()) {
        ssize_t n = write(fd_, wire_out_.data(), wire_out_.size());
        if (n <= 0) break;
        wire_out_.Consume(static_cast<size_t>(n));
      }
    }
    if (loop_ != nullptr) loop_->Remove(fd_);
    close(fd_);
    fd_ = -1;
  }
  Event ev{EventType::kSessionClosed};
  ev.id = id_;
  ev.owner = owner_;
  ev.message = why;
  host_->Emit(std::move(ev));
  host_->SessionRemoved(this);
  if (loop_ != nullptr) loop_->Retire(this);
}

void Session::Drain() {
  if (closed_ || closing_ || role_ != Role::kServer) return;
  if (h2_ == nullptr) {
    drain_pending_ = true;  // still in the TLS handshake: the notice goes with its first frames
    return;
  }
  // GOAWAY with the highest stream id (RFC 9113 6.8 "graceful shutdown"): the peer
  // opens no new streams here, and none in flight is refused; the open ones go on.
  nghttp2_submit_shutdown_notice(h2_);
  Pump();
}

void Session::Fail(const std::string& why, int err) {
  if (closed_) return;
  std::string message = why;
  if (err != 0) message += std::string(": ") + strerror(err);
  Close(false, message);
}

// ---- HTTP/2 callbacks ----

int Session::OnBeginHeaders(const nghttp2_frame* frame) {
  if (role_ != Role::kServer || frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* tunnel = new Tunnel(this, host_->NewTunnelId(), frame->hd.stream_id);
  tunnels_[frame->hd.stream_id] = tunnel;
  host_->TunnelAdded(tunnel);
  return 0;
}

int Session::OnHeader(const nghttp2_frame* frame, const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  Tunnel* t = Find(frame->hd.stream_id);
  if (t == nullptr) return 0;
  std::string n(reinterpret_cast<const char*>(name), namelen);
  std::string v(reinterpret_cast<const char*>(value), valuelen);
  if (role_ == Role::kClient) {
    if (n == ":status" && valuelen == 3) t->status = std::atoi(v.c_str());
    return 0;
  }
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  // The first value of each counts, as the TypeScript server reads them.
  if (n == ":method") t->method = v;
  else if (n == ":authority") t->authority = v;
  else if (n == "forwarded" && !(t->present & kHasForwarded)) t->forwarded = v, t->present |= kHasForwarded;
  else if (n == "baggage" && !(t->present & kHasBaggage)) t->baggage = v, t->present |= kHasBaggage;
  else if (n == "traceparent" && !(t->present & kHasTraceparent)) t->traceparent = v, t->present |= kHasTraceparent;
  return 0;
}

int Session::OnFrameRecv(const nghttp2_frame* frame) {
  switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
      if (role_ == Role::kClient && !ready_ && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        ready_ = true;
        deadline_ms_ = 0;
        loop_->Unwatch(this);
        Event ev{EventType::kSessionReady};
        ev.id = id_;
        ev.count = nghttp2_session_get_remote_settings(h2_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        host_->Emit(std::move(ev));
      }
      return 0;
    case NGHTTP2_GOAWAY:
      if (role_ == Role::kClient) {
        Event ev{EventType::kSessionGoaway};
        ev.id = id_;
        ev.code = frame->goaway.error_code;
        host_->Emit(std::move(ev));
      }
      return 0;
    case NGHTTP2_HEADERS: {
      Tunnel* t = Find(frame->hd.stream_id);
      if (t == nullptr) return 0;
      if (role_ == Role::kServer && frame->headers.cat == NGHTTP2_HCAT_REQUEST) t->OnRequestComplete();
      else if (role_ == Role::kClient && frame->headers.cat == NGHTTP2_HCAT_RESPONSE && t->status >= 200) t->OnResponse();
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) t->OnPeerEnd();
      return 0;
    }
    case NGHTTP2_DATA: {
      Tunnel* t = Find(frame->hd.stream_id);
      if (t != nullptr && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) t->OnPeerEnd();
      return 0;
    }
    default:
      return 0;
  }
}

int Session::OnFrameSend(const nghttp2_frame* frame) {
  if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    Tunnel* t = Find(frame->hd.stream_id);
    if (t != nullptr) t->OnEndSent();
  }
  return 0;
}

int Session::OnDataChunk(int32_t stream_id, const uint8_t* data, size_t len) {
  Tunnel* t = Find(stream_id);
  if (t == nullptr) {
    nghttp2_session_consume_connection(h2_, len);
    return 0;
  }
  t->OnData(data, len);
  return 0;
}

int Session::OnStreamClose(int32_t stream_id, uint32_t error_code) {
  Tunnel* t = Find(stream_id);
  if (t == nullptr) return 0;
  t->OnStreamClosed(error_code);
  return 0;
}

ssize_t Session::OnSend(const uint8_t* data, size_t length) {
  if (WireFull()) {
    blocked_ = true;
    return NGHTTP2_ERR_WOULDBLOCK;
  }
  plain_out_.Append(data, length);
  return static_cast<ssize_t>(length);
}

int Session::OnSendData(nghttp2_frame* frame, const uint8_t* framehd, size_t length, Tunnel* tunnel) {
  if (WireFull()) {
    blocked_ = true;
    return NGHTTP2_ERR_WOULDBLOCK;
  }
  plain_out_.Append(framehd, 9);
  size_t pad = frame->data.padlen;
  if (pad > 0) {
    uint8_t padlen = static_cast<uint8_t>(pad - 1);
    plain_out_.Append(&padlen, 1);
  }
  plain_out_.Append(tunnel->up_data(), length);
  if (pad > 1) {
    uint8_t zeros[256] = {0};
    plain_out_.Append(zeros, pad - 1);
  }
  tunnel->TakeData(length);
  return 0;
}

}  // namespace ambient::hbone
