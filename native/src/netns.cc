// Sockets and cookies of other network namespaces. Each call runs on a libuv pool
// thread (Napi::AsyncWorker) that starts a dedicated short-lived std::thread; only
// that thread enters the namespace with setns(CLONE_NEWNET), and it ends right
// after, so neither the main thread nor a pool thread ever changes namespace.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "errors.h"
#include "netns.h"
#include "objects.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

namespace ambient {

Failure InNetns(const std::string& path, const std::function<Failure()>& work) {
  std::vector<Failure> failures;
  InEachNetns({path}, [&](size_t) { return work(); }, &failures);
  return failures[0];
}

void InEachNetns(const std::vector<std::string>& paths, const std::function<Failure(size_t)>& work, std::vector<Failure>* failures) {
  failures->assign(paths.size(), Failure{});
  try {
    std::thread thread([&]() {
      for (size_t i = 0; i < paths.size(); i++) {
        int ns = open(paths[i].c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0) {
          (*failures)[i] = {errno, "open"};
          continue;
        }
        if (setns(ns, CLONE_NEWNET) != 0) (*failures)[i] = {errno, "setns"};
        else (*failures)[i] = work(i);
        close(ns);
      }
    });
    thread.join();
  } catch (const std::system_error& e) {
    for (auto& f : *failures) f = {e.code().value() ? e.code().value() : EAGAIN, "pthread_create"};
  }
}

Failure CreateSocket(int family, int* out) {
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return {errno, "socket"};
  *out = fd;
  return {};
}

// Options, bind and listen: none of these depend on the calling thread's netns (a
// socket keeps the netns it was created in), so they may run on any thread.
Failure ConfigureSocket(int fd, const SocketOptions& o) {
  auto fail = [&](const char* what) { return Failure{errno, what}; };
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
    int parsed;
    if (o.family == 6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(static_cast<uint16_t>(o.bind_port));
      parsed = inet_pton(AF_INET6, o.bind_address.c_str(), &a->sin6_addr);
      len = sizeof(*a);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(static_cast<uint16_t>(o.bind_port));
      parsed = inet_pton(AF_INET, o.bind_address.c_str(), &a->sin_addr);
      len = sizeof(*a);
    }
    if (parsed != 1) {
      errno = EINVAL;
      return fail("inet_pton");
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len)) return fail("bind");
  }
  if (o.listen_backlog >= 0 && listen(fd, o.listen_backlog)) return fail("listen");
  return {};
}

Failure MakeSocket(const SocketOptions& o, int* out) {
  int fd;
  Failure f = CreateSocket(o.family, &fd);
  if (f.err) return f;
  f = ConfigureSocket(fd, o);
  if (f.err) {
    close(fd);
    return f;
  }
  *out = fd;
  return {};
}

std::string FailureMessage(const Failure& f, const std::string& path, const SocketOptions& o) {
  std::string at = " in network namespace " + path;
  if (f.syscall == "open") {
    if (f.err == ENOENT) return "no network namespace at " + path + ": is the pod still running?";
    return "open(" + path + ") failed: " + Describe(f.err) + (f.err == EACCES ? ": run as root" : "");
  }
  if (f.syscall == "setns") {
    if (f.err == EINVAL) return path + " is not a network namespace: pass /proc/PID/ns/net or /run/netns/NAME";
    if (f.err == EPERM) return "setns(" + path + ") failed: operation not permitted: run as root or with CAP_SYS_ADMIN";
    return "setns(" + path + ") failed: " + Describe(f.err);
  }
  std::string message = f.syscall + at + " failed: " + Describe(f.err);
  if (f.err == EPERM || f.err == EACCES) return message + ": run as root or with CAP_NET_ADMIN";
  if (f.syscall == "inet_pton") return "bindAddress " + o.bind_address + " is not a numeric IPv" + std::to_string(o.family) + " address";
  if (f.syscall == "bind") {
    std::string addr = o.bind_address + ":" + std::to_string(o.bind_port);
    if (f.err == EADDRNOTAVAIL)
      return "bind(" + addr + ")" + at + " failed: address not available there: use an address of that namespace, or transparent: true";
    if (f.err == EADDRINUSE)
      return "bind(" + addr + ")" + at + " failed: address already in use: pick another port, or reuseAddr/reusePort";
    return "bind(" + addr + ")" + at + " failed: " + Describe(f.err);
  }
  if (f.syscall == "setsockopt(SO_BINDTODEVICE)" && f.err == ENODEV) return "no device " + o.bind_to_device + at;
  return message;
}


static bool Flag(const Napi::Object& o, const char* name) { return o.Has(name) && o.Get(name).ToBoolean().Value(); }

SocketOptions ParseSocketOptions(Napi::Env env, const Napi::Value& value) {
  if (!value.IsObject()) ThrowInvalid(env, "options must be an object");
  Napi::Object o = value.As<Napi::Object>();
  SocketOptions options;
  Napi::Value family = o.Get("family");
  options.family = family.IsNumber() ? family.As<Napi::Number>().Int32Value() : 0;
  if (options.family != 4 && options.family != 6) ThrowInvalid(env, "family must be 4 or 6");
  Napi::Value v = o.Get("mark");
  if (v.IsNumber()) options.mark = v.As<Napi::Number>().Int64Value();
  if (options.mark > 0xffffffffLL) ThrowInvalid(env, "mark must be a 32-bit unsigned integer");
  options.transparent = Flag(o, "transparent");
  options.reuse_addr = Flag(o, "reuseAddr");
  options.reuse_port = Flag(o, "reusePort");
  if ((v = o.Get("bindToDevice")).IsString()) options.bind_to_device = v.As<Napi::String>().Utf8Value();
  if ((v = o.Get("bindAddress")).IsString()) options.bind_address = v.As<Napi::String>().Utf8Value();
  if ((v = o.Get("bindPort")).IsNumber()) options.bind_port = v.As<Napi::Number>().Int32Value();
  if (options.bind_port < 0 || options.bind_port > 65535) ThrowInvalid(env, "bindPort must be 0-65535");
  if ((v = o.Get("listenBacklog")).IsNumber()) options.listen_backlog = v.As<Napi::Number>().Int32Value();
  return options;
}


namespace {
class NetnsWorker : public Napi::AsyncWorker {
 public:
  // count 0: one configured socket (or the cookie); count > 0: that many plain sockets.
  NetnsWorker(Napi::Env env, std::string path, bool cookie, SocketOptions options, int count = 0)
      : Napi::AsyncWorker(env, "ambient:netns"), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)),
        cookie_mode_(cookie), options_(std::move(options)), count_(count) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    failure_ = InNetns(path_, [&]() -> Failure {
      for (int i = 0; i < count_; i++) {
        int fd;
        Failure f = CreateSocket(options_.family, &fd);
        if (f.err) {
          for (int made : fds_) close(made);
          fds_.clear();
          return f;
        }
        fds_.push_back(fd);
      }
      if (count_ > 0) return {};
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
    Napi::HandleScope scope(env);
    if (failure_.err) {
      Napi::Error error = ErrnoError(env, failure_.err, failure_.syscall, FailureMessage(failure_, path_, options_), false);
      deferred_.Reject(error.Value());
    } else if (count_ > 0) {
      Napi::Array fds = Napi::Array::New(env, fds_.size());
      for (size_t i = 0; i < fds_.size(); i++) fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds_[i]));
      deferred_.Resolve(fds);
    } else if (cookie_mode_) {
      deferred_.Resolve(Napi::BigInt::New(env, cookie_));
    } else {
      deferred_.Resolve(Napi::Number::New(env, fd_));
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  bool cookie_mode_;
  SocketOptions options_;
  int count_;
  Failure failure_;
  std::vector<int> fds_;
  int fd_ = -1;
  uint64_t cookie_ = 0;
};

Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  auto* worker = new NetnsWorker(info.Env(), ArgString(info, 0, "netnsPath"), true, SocketOptions{});
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value SocketInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  auto* worker = new NetnsWorker(env, path, false, ParseSocketOptions(env, info[1]));
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

// socketsInNetns(netnsPath, family, count): `count` plain TCP sockets made in one
// trip into the namespace, to be configured later with configureSocket.
Napi::Value SocketsInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  SocketOptions options;
  options.family = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  if (options.family != 4 && options.family != 6) ThrowInvalid(env, "family must be 4 or 6");
  int count = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
  if (count < 1 || count > 64) ThrowInvalid(env, "count must be 1-64");
  auto* worker = new NetnsWorker(env, path, false, options, count);
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

// configureSocket(fd, netnsPath, options): socketInNetns's options applied on the
// calling thread to a socket from socketsInNetns; netnsPath only names it in errors.
Napi::Value ConfigureSocketSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowInvalid(env, "fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string path = ArgString(info, 1, "netnsPath");
  SocketOptions options = ParseSocketOptions(env, info[2]);
  Failure failure = ConfigureSocket(fd, options);
  if (failure.err) throw ErrnoError(env, failure.err, failure.syscall, FailureMessage(failure, path, options), false);
  return env.Undefined();
}

// dupFd(fd): a close-on-exec duplicate, so a socket Node adopted can be handed to
// the HBONE engine while Node closes its own descriptor.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowInvalid(env, "fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) ThrowCall(env, errno, "fcntl(F_DUPFD_CLOEXEC)", std::to_string(fd));
  return Napi::Number::New(env, copy);
}

// socketCookie(fd): the socket's cookie (SO_COOKIE), what a SOCKHASH lookup from
// user space returns for the socket it holds.
Napi::Value SocketCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowInvalid(env, "fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len)) ThrowCall(env, errno, "getsockopt(SO_COOKIE)", std::to_string(fd));
  return Napi::BigInt::New(env, cookie);
}
}  // namespace

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie));
  exports.Set("socketInNetns", Napi::Function::New(env, SocketInNetns));
  exports.Set("socketsInNetns", Napi::Function::New(env, SocketsInNetns));
  exports.Set("configureSocket", Napi::Function::New(env, ConfigureSocketSync));
  exports.Set("dupFd", Napi::Function::New(env, DupFd));
  exports.Set("socketCookie", Napi::Function::New(env, SocketCookie));
}

}  // namespace ambient
