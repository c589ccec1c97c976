#include "tunnel.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "events.h"
#include "session.h"

namespace ambient::hbone {

namespace {
constexpr int kConnectTimeoutMs = 10000;

void CloseWithReset(int fd) {
  linger hard{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  close(fd);
}
}  // namespace

Tunnel::Tunnel(Session* session, uint64_t id, int32_t stream_id) : session_(session), id_(id), stream_id_(stream_id) {}

Tunnel::~Tunnel() {
  if (fd_ >= 0) CloseWithReset(fd_);
}

// ---- decisions and commands ----

void Tunnel::OnRequestComplete() {
  if (awaiting_decision_ || finished_) return;
  awaiting_decision_ = true;
  Event ev{EventType::kRequest};
  ev.id = id_;
  ev.owner = session_->id();
  ev.status = present;
  ev.fields = {method, authority, forwarded, baggage, traceparent};
  session_->host()->Emit(std::move(ev));
}

void Tunnel::Deliver(int fd, const sockaddr_storage& addr, socklen_t len) {
  if (!awaiting_decision_ || !stream_open_ || fd_ >= 0) {
    close(fd);  // the stream went away meanwhile (its close was reported), or a second answer
    return;
  }
  fd_ = fd;
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int err = session_->loop()->Add(fd_, this);
  if (err == 0) registered_ = true;
  if (err == 0 && connect(fd_, reinterpret_cast<const sockaddr*>(&addr), len) == 0) return StartRelay();
  if (err == 0) err = errno;
  if (err == EINPROGRESS) {
    connecting_ = true;
    connect_deadline_ms_ = NowMs() + kConnectTimeoutMs;
    session_->loop()->Watch(this);
    return;
  }
  ClosePlain();
  Event ev{EventType::kDeliveryFailed};
  ev.id = id_;
  ev.err = err;
  ev.message = std::string("connect failed: ") + strerror(err);
  session_->host()->Emit(std::move(ev));
}

void Tunnel::Reject(int code) {
  if (!awaiting_decision_ || !stream_open_ || relaying_) return;
  awaiting_decision_ = false;
  status = code;
  if (fd_ >= 0) ClosePlain();
  session_->Respond(this, code, false);
  session_->Pump();
}

void Tunnel::Reset(const std::string& why) {
  if (finished_) return;
  reset_requested_ = true;
  if (error_.empty()) error_ = why;
  awaiting_decision_ = false;
  AbortPlain();
  if (stream_open_) {
    nghttp2_submit_rst_stream(session_->h2(), NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_CONNECT_ERROR);
    session_->Pump();
  }
  MaybeFinish();
}

void Tunnel::OnResponse() {
  Event ev{EventType::kResponse};
  ev.id = id_;
  ev.status = status;
  session_->host()->Emit(std::move(ev));
  if (status == 200) return StartRelay();
  AbortPlain();
  if (stream_open_) nghttp2_submit_rst_stream(session_->h2(), NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_CANCEL);
}

void Tunnel::StartRelay() {
  if (session_->role() == Session::Role::kServer) {
    connecting_ = false;
    session_->loop()->Unwatch(this);
    awaiting_decision_ = false;
    status = 200;
    if (session_->Respond(this, 200, true) != 0) return Reset("cannot respond");
    Event ev{EventType::kDelivered};
    ev.id = id_;
    session_->host()->Emit(std::move(ev));
  } else {
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int err = session_->loop()->Add(fd_, this);
    if (err != 0) return PlainFailed(err, "epoll_ctl");
    registered_ = true;
  }
  relaying_ = true;
  readable_ = true;  // whatever arrived already (edge-triggered: read until EAGAIN)
  FlushDown();
  ReadPlain();
  session_->Pump();
  MaybeFinish();
}

// ---- the plain socket ----

void Tunnel::OnPoll(uint32_t events) {
  if (finished_ || fd_ < 0) return;
  if (connecting_) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      connecting_ = false;
      session_->loop()->Unwatch(this);
      ClosePlain();
      Event ev{EventType::kDeliveryFailed};
      ev.id = id_;
      ev.err = err;
      ev.message = std::string("connect failed: ") + strerror(err);
      session_->host()->Emit(std::move(ev));
      return;
    }
    return StartRelay();
  }
  if (!relaying_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable_ = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hangup_ = true;
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) writable_ = true;
  if (writable_ && !down_.empty()) FlushDown();
  if (readable_) ReadPlain();
  session_->Pump();
  MaybeFinish();
}

void Tunnel::OnTick(int64_t now_ms) {
  if (!connecting_ || now_ms < connect_deadline_ms_) return;
  connecting_ = false;
  session_->loop()->Unwatch(this);
  ClosePlain();
  Event ev{EventType::kDeliveryFailed};
  ev.id = id_;
  ev.err = ETIMEDOUT;
  ev.message = "connect timed out";
  session_->host()->Emit(std::move(ev));
}

void Tunnel::ReadPlain() {
  bool any = false;
  while (readable_ && fd_ >= 0 && !plain_eof_ && up_.size() < kUpBufferBytes) {
    size_t want = kUpBufferBytes - up_.size();
    ssize_t n = read(fd_, up_.Space(want), want);
    if (n > 0) {
      up_.Commit(static_cast<size_t>(n));
      counters_->sent.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      any = true;
      // A short read emptied the socket: the next arrival is a new edge, so no read just
      // to see EAGAIN (unless a FIN came with this edge: it needs the read that returns 0).
      if (static_cast<size_t>(n) < want && !hangup_) readable_ = false;
    } else if (n == 0) {
      plain_eof_ = true;
      any = true;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      readable_ = false;
    } else if (errno != EINTR) {
      return PlainFailed(errno, "read");
    }
  }
  if (any) ResumeIfDeferred();
}

void Tunnel::Refill() {
  if (!finished_ && relaying_ && readable_) ReadPlain();
}

void Tunnel::FlushDown() {
  while (!down_.empty() && writable_ && fd_ >= 0) {
    ssize_t n = write(fd_, down_.data(), down_.size());
    if (n > 0) {
      down_.Consume(static_cast<size_t>(n));
      counters_->received.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      pending_consume_ += static_cast<size_t>(n);
      session_->Consumed(this, static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      writable_ = false;
    } else if (!(n < 0 && errno == EINTR)) {
      return PlainFailed(n < 0 ? errno : EPIPE, "write");
    }
  }
  if (!down_.empty()) return;
  down_.Release();
  if (peer_end_ && !shut_wr_ && fd_ >= 0 && relaying_) {
    shutdown(fd_, SHUT_WR);
    shut_wr_ = true;
  }
}

void Tunnel::PlainFailed(int err, const char* what) {
  plain_error_ = err;
  if (error_.empty()) error_ = std::string(what) + " on the plain socket failed: " + strerror(err);
  AbortPlain();
  if (stream_open_) {
    nghttp2_submit_rst_stream(session_->h2(), NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_CONNECT_ERROR);
  }
}

void Tunnel::AbortPlain() {
  if (fd_ < 0) return;
  if (registered_) session_->loop()->Remove(fd_);
  registered_ = false;
  CloseWithReset(fd_);
  fd_ = -1;
  up_.Consume(up_.size());
  up_.Release();
  if (!down_.empty()) {
    // Bytes that will never be written still hold the connection window open.
    pending_consume_ += down_.size();
    session_->Consumed(this, down_.size());
    down_.Consume(down_.size());
  }
  down_.Release();
}

void Tunnel::ClosePlain() {
  if (fd_ < 0) return;
  if (registered_) session_->loop()->Remove(fd_);
  registered_ = false;
  close(fd_);
  fd_ = -1;
}

// ---- the HTTP/2 stream ----

void Tunnel::OnData(const uint8_t* data, size_t len) {
  if (fd_ < 0 && (relaying_ || plain_error_ != 0 || reset_requested_)) {
    // Nowhere to write: the window is given back so the connection keeps moving.
    pending_consume_ += len;
    session_->Consumed(this, len);
    return;
  }
  if (relaying_ && down_.empty() && writable_) {
    ssize_t n = write(fd_, data, len);
    if (n > 0) {
      counters_->received.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      pending_consume_ += static_cast<size_t>(n);
      session_->Consumed(this, static_cast<size_t>(n));
      data += n;
      len -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      writable_ = false;
    } else if (!(n < 0 && errno == EINTR)) {
      PlainFailed(n < 0 ? errno : EPIPE, "write");
      pending_consume_ += len;
      session_->Consumed(this, len);
      return;
    }
  }
  // Before the relay starts (early data) or while the socket is full; bounded by the stream window.
  down_.Append(data, len);
}

void Tunnel::OnEndSent() {
  end_sent_ = true;
  // A refused request: the client may still be sending; RST_STREAM(NO_ERROR) stops it.
  if (session_->role() == Session::Role::kServer && status != 200 && stream_open_ && !peer_end_)
    nghttp2_submit_rst_stream(session_->h2(), NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_NO_ERROR);
}

void Tunnel::OnPeerEnd() {
  peer_end_ = true;
  if (relaying_ && fd_ >= 0) FlushDown();
}

void Tunnel::OnStreamClosed(uint32_t code) {
  stream_open_ = false;
  rst_code_ = code;
  awaiting_decision_ = false;
  bool clean = code == NGHTTP2_NO_ERROR && peer_end_ && end_sent_;
  if (!clean) {
    if (error_.empty() && (relaying_ || session_->role() == Session::Role::kClient))
      error_ = (relaying_ ? "hbone stream reset (code " : "hbone stream closed before a response (code ") + std::to_string(code) + ")";
    AbortPlain();
  }
  MaybeFinish();
}

void Tunnel::OnSessionGone(const std::string& why) {
  if (finished_) return;
  if (stream_open_ && error_.empty()) error_ = why;
  stream_open_ = false;
  if (rst_code_ == 0 && !(peer_end_ && end_sent_)) rst_code_ = NGHTTP2_INTERNAL_ERROR;
  AbortPlain();
  MaybeFinish();
}

ssize_t Tunnel::ProvideData(size_t length, uint32_t* flags) {
  if (!relaying_) {
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t n = std::min(up_.size(), length);
  if (n == 0) {
    if (plain_eof_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    if (plain_error_ != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (plain_eof_ && n == up_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

void Tunnel::TakeData(size_t n) {
  up_.Consume(n);
  if (up_.empty()) up_.Release();
  if (readable_ && !plain_eof_ && fd_ >= 0) session_->WantsRefill(this);
}

void Tunnel::ResumeIfDeferred() {
  if (!deferred_ || !stream_open_) return;
  deferred_ = false;
  nghttp2_session_resume_data(session_->h2(), stream_id_);
}

void Tunnel::MaybeFinish() {
  if (finished_ || stream_open_) return;
  if (fd_ >= 0) {
    // A clean end: what the stream delivered goes out before the socket closes.
    if (!down_.empty()) return;  // EPOLLOUT flushes it, then finishes
    if (!shut_wr_ && relaying_) {
      shutdown(fd_, SHUT_WR);
      shut_wr_ = true;
    }
    ClosePlain();
  }
  finished_ = true;
  if (connecting_) session_->loop()->Unwatch(this);
  connecting_ = false;
  Event ev{EventType::kTunnelClosed};
  ev.id = id_;
  ev.owner = session_->id();
  ev.status = status;
  ev.code = rst_code_;
  ev.err = plain_error_;
  ev.received = counters_->received.load();
  ev.sent = counters_->sent.load();
  ev.message = error_;
  session_->host()->Emit(std::move(ev));
  session_->Forget(this);
  session_->loop()->Retire(this);
}

}  // namespace ambient::hbone
