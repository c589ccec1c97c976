// Passing open descriptors between processes over a Unix stream socket
// (SCM_RIGHTS): how a new ztunnel takes over its predecessor's listening sockets.
// A frame is a 4-byte little-endian length and that many bytes, sent by one
// sendmsg with the descriptors attached, so they arrive with the frame's first
// byte. The sender writes non-blocking from the JS thread (frames are small); the
// receiver reads on a libuv pool thread with a deadline.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "objects.h"

namespace ambient {
namespace {

constexpr size_t kMaxFds = 253;  // SCM_MAX_FD
constexpr uint32_t kMaxFrame = 1 << 20;

int FdArg(const Napi::CallbackInfo& info, size_t index) {
  if (!info[index].IsNumber()) ThrowInvalid(info.Env(), "fd must be a number");
  int fd = info[index].As<Napi::Number>().Int32Value();
  if (fd < 0) ThrowInvalid(info.Env(), "fd must be a non-negative integer");
  return fd;
}

// unixConnect(path): a blocking, close-on-exec Unix stream socket connected to path.
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) ThrowInvalid(env, "path must be 1-107 bytes, got " + std::to_string(path.size()));
  memcpy(addr.sun_path, path.c_str(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowCall(env, errno, "socket", "AF_UNIX");
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    ThrowCall(env, err, "connect", path);
  }
  return Napi::Number::New(env, fd);
}

// sendFrame(fd, data, fds): one frame with `fds` attached; EAGAIN when the socket
// cannot take all of it now (nothing was sent then), EMSGSIZE past the limits.
Napi::Value SendFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  Napi::Buffer<uint8_t> data = ArgBuffer(info, 1, "data");
  if (!info[2].IsArray()) ThrowInvalid(env, "fds must be an array");
  Napi::Array list = info[2].As<Napi::Array>();
  if (list.Length() > kMaxFds) ThrowInvalid(env, "at most 253 descriptors per frame");
  if (data.Length() > kMaxFrame) ThrowInvalid(env, "a frame holds at most 1 MiB");
  std::vector<int> fds;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsNumber() || v.As<Napi::Number>().Int32Value() < 0) ThrowInvalid(env, "fds must be non-negative integers");
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  std::vector<uint8_t> frame(4 + data.Length());
  uint32_t len = static_cast<uint32_t>(data.Length());
  for (int i = 0; i < 4; i++) frame[i] = static_cast<uint8_t>(len >> (8 * i));
  memcpy(frame.data() + 4, data.Data(), data.Length());
  iovec iov{frame.data(), frame.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (fds.empty() ? 1 : fds.size())), 0);
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  // Frames are small; a stream socket takes one whole or, when its buffer is full, none (EAGAIN).
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) ThrowCall(env, errno, "sendmsg", std::to_string(fd));
  if (static_cast<size_t>(n) != frame.size()) {
    // Part of it went (a buffer nearly full): the rest is written blocking, without descriptors.
    size_t off = static_cast<size_t>(n);
    while (off < frame.size()) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, 5000) <= 0) ThrowErrno(env, ETIMEDOUT, "sendmsg", "the peer stopped reading a handover frame", false);
      ssize_t m = send(fd, frame.data() + off, frame.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (m < 0 && errno != EAGAIN && errno != EINTR) ThrowCall(env, errno, "send", std::to_string(fd));
      if (m > 0) off += static_cast<size_t>(m);
    }
  }
  return env.Undefined();
}

class RecvFrameWorker : public Napi::AsyncWorker {
 public:
  RecvFrameWorker(Napi::Env env, int fd, int timeout_ms)
      : Napi::AsyncWorker(env, "ambient:recvFrame"), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), timeout_ms_(timeout_ms) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    uint8_t header[4];
    size_t got = 0;
    while (got < 4) {
      ssize_t n = ReadSome(header + got, 4 - got);
      if (n == 0) {
        if (got == 0) eof_ = true;
        else err_ = {ECONNRESET, "recvmsg"};
        return;
      }
      if (n < 0) return;
      got += static_cast<size_t>(n);
    }
    uint32_t len = header[0] | (header[1] << 8) | (header[2] << 16) | (static_cast<uint32_t>(header[3]) << 24);
    if (len > kMaxFrame) {
      err_ = {EMSGSIZE, "recvmsg"};
      return;
    }
    data_.resize(len);
    got = 0;
    while (got < len) {
      ssize_t n = ReadSome(data_.data() + got, len - got);
      if (n == 0) err_ = {ECONNRESET, "recvmsg"};
      if (n <= 0) return;
      got += static_cast<size_t>(n);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (err_.first) {
      for (int fd : fds_) close(fd);
      std::string what = err_.first == ETIMEDOUT ? "no handover frame within " + std::to_string(timeout_ms_) + " ms"
                                                 : err_.second + "(" + std::to_string(fd_) + ") failed: " + Describe(err_.first);
      deferred_.Reject(ErrnoError(env, err_.first, err_.second, what, false).Value());
      return;
    }
    if (eof_) return deferred_.Resolve(env.Null());
    Napi::Object out = Napi::Object::New(env);
    out.Set("data", Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()));
    Napi::Array fds = Napi::Array::New(env, fds_.size());
    for (size_t i = 0; i < fds_.size(); i++) fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds_[i]));
    out.Set("fds", fds);
    deferred_.Resolve(out);
  }

 private:
  // Waits (until the deadline) and reads; descriptors arrive with the frame's first bytes.
  ssize_t ReadSome(uint8_t* buf, size_t len) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now()).count();
      if (left <= 0) {
        err_ = {ETIMEDOUT, "poll"};
        return -1;
      }
      pollfd p{fd_, POLLIN, 0};
      int r = poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno != EINTR) {
        err_ = {errno, "poll"};
        return -1;
      }
      if (r <= 0) continue;
      iovec iov{buf, len};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFds));
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      ssize_t n = recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        err_ = {errno, "recvmsg"};
        return -1;
      }
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const int* received = reinterpret_cast<const int*>(CMSG_DATA(c));
        for (size_t i = 0; i < count; i++) fds_.push_back(received[i]);
      }
      if (msg.msg_flags & MSG_CTRUNC) {
        err_ = {EMSGSIZE, "recvmsg"};  // descriptors were dropped: the frame is unusable
        return -1;
      }
      return n;
    }
  }

  Napi::Promise::Deferred deferred_;
  int fd_;
  int timeout_ms_;
  std::chrono::steady_clock::time_point deadline_;
  std::vector<uint8_t> data_;
  std::vector<int> fds_;
  bool eof_ = false;
  std::pair<int, std::string> err_{0, ""};
};

// recvFrame(fd, timeoutMs): the next frame and its descriptors (the caller owns
// them), null at end of stream; rejects with ETIMEDOUT after timeoutMs.
Napi::Value RecvFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  int timeout = ArgInt(info, 1, "timeoutMs");
  if (timeout < 1) ThrowInvalid(env, "timeoutMs must be positive");
  auto* worker = new RecvFrameWorker(env, fd, timeout);
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitFdpass(Napi::Env env, Napi::Object exports) {
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("sendFrame", Napi::Function::New(env, SendFrame));
  exports.Set("recvFrame", Napi::Function::New(env, RecvFrame));
}

}  // namespace ambient
