// Sockets and cookies of other network namespaces. The work runs on a dedicated
// short-lived std::thread that enters the namespace with setns(CLONE_NEWNET) and
// then ends, so neither the main thread nor a libuv pool thread ever changes
// namespace. Results come back as Promises.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "errors.h"
#include "objects.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace ambient {

namespace {
struct SocketOptions {
  int family = 4;
  int mark = -1;
  bool transparent = false;
  std::string bind_to_device;
  bool reuse_addr = false;
  bool reuse_port = false;
  std::string bind_address;
  int bind_port = 0;
  int listen_backlog = -1;
};

struct Failure {
  int err = 0;
  std::string syscall;
};

// Runs `work` on a fresh thread inside the netns at `path`.
template <typename Work>
Failure InNetns(const std::string& path, Work work) {
  Failure failure;
  int ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) return {errno, "open netns"};
  std::thread thread([&]() {
    if (setns(ns, CLONE_NEWNET) != 0) {
      failure = {errno, "setns"};
      return;
    }
    failure = work();
  });
  thread.join();
  close(ns);
  return failure;
}

Failure MakeSocket(const SocketOptions& o, int* out) {
  int domain = o.family == 6 ? AF_INET6 : AF_INET;
  int fd = socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return {errno, "socket"};
  auto fail = [&](const char* what) {
    Failure f{errno, what};
    close(fd);
    return f;
  };
  int one = 1;
  if (o.reuse_addr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) return fail("setsockopt(SO_REUSEADDR)");
  if (o.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) return fail("setsockopt(SO_REUSEPORT)");
  if (o.mark >= 0) {
    uint32_t mark = static_cast<uint32_t>(o.mark);
    if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark))) return fail("setsockopt(SO_MARK)");
  }
  if (o.transparent) {
    int r = o.family == 6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
                          : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
    if (r) return fail("setsockopt(IP_TRANSPARENT)");
  }
  if (!o.bind_to_device.empty() &&
      setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o.bind_to_device.c_str(), o.bind_to_device.size()))
    return fail("setsockopt(SO_BINDTODEVICE)");
  if (!o.bind_address.empty()) {
    sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (o.family == 6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(o.bind_port);
      if (inet_pton(AF_INET6, o.bind_address.c_str(), &a->sin6_addr) != 1) {
        errno = EINVAL;
        return fail("inet_pton");
      }
      len = sizeof(*a);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(o.bind_port);
      if (inet_pton(AF_INET, o.bind_address.c_str(), &a->sin_addr) != 1) {
        errno = EINVAL;
        return fail("inet_pton");
      }
      len = sizeof(*a);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len)) return fail("bind");
  }
  if (o.listen_backlog >= 0 && listen(fd, o.listen_backlog)) return fail("listen");
  *out = fd;
  return {};
}

class NetnsWorker : public Napi::AsyncWorker {
 public:
  NetnsWorker(Napi::Env env, std::string path, bool cookie, SocketOptions options)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)),
        cookie_mode_(cookie), options_(std::move(options)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    failure_ = InNetns(path_, [&]() -> Failure {
      if (!cookie_mode_) return MakeSocket(options_, &fd_);
      int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (s < 0) s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (s < 0) return {errno, "socket"};
      socklen_t len = sizeof(cookie_);
      int r = getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &cookie_, &len);
      Failure f = r ? Failure{errno, "getsockopt(SO_NETNS_COOKIE)"} : Failure{};
      close(s);
      return f;
    });
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (failure_.err) {
      std::string what = failure_.syscall == "open netns" ? path_ : "in netns " + path_;
      if (failure_.syscall == "bind" && !options_.bind_address.empty())
        what += " (" + options_.bind_address + ":" + std::to_string(options_.bind_port) + ")";
      deferred_.Reject(MakeErrnoError(env, failure_.err, failure_.syscall, what).Value());
    } else if (cookie_mode_) {
      deferred_.Resolve(Napi::BigInt::New(env, static_cast<uint64_t>(cookie_)));
    } else {
      deferred_.Resolve(Napi::Number::New(env, fd_));
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  bool cookie_mode_;
  SocketOptions options_;
  Failure failure_;
  int fd_ = -1;
  uint64_t cookie_ = 0;
};

Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  auto* worker = new NetnsWorker(info.Env(), info[0].As<Napi::String>(), true, SocketOptions{});
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value SocketInNetns(const Napi::CallbackInfo& info) {
  Napi::Object o = info[1].As<Napi::Object>();
  SocketOptions options;
  options.family = o.Get("family").As<Napi::Number>().Int32Value();
  if (o.Has("mark") && o.Get("mark").IsNumber()) options.mark = static_cast<int>(o.Get("mark").As<Napi::Number>().Uint32Value());
  if (o.Has("transparent")) options.transparent = o.Get("transparent").ToBoolean();
  if (o.Has("bindToDevice") && o.Get("bindToDevice").IsString()) options.bind_to_device = o.Get("bindToDevice").As<Napi::String>();
  if (o.Has("reuseAddr")) options.reuse_addr = o.Get("reuseAddr").ToBoolean();
  if (o.Has("reusePort")) options.reuse_port = o.Get("reusePort").ToBoolean();
  if (o.Has("bindAddress") && o.Get("bindAddress").IsString()) options.bind_address = o.Get("bindAddress").As<Napi::String>();
  if (o.Has("bindPort") && o.Get("bindPort").IsNumber()) options.bind_port = o.Get("bindPort").As<Napi::Number>().Int32Value();
  if (o.Has("listenBacklog") && o.Get("listenBacklog").IsNumber()) options.listen_backlog = o.Get("listenBacklog").As<Napi::Number>().Int32Value();
  auto* worker = new NetnsWorker(info.Env(), info[0].As<Napi::String>(), false, options);
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}
}  // namespace

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie));
  exports.Set("socketInNetns", Napi::Function::New(env, SocketInNetns));
}

}  // namespace ambient
