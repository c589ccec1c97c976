// Per-pod work inside pods' network namespaces, batched: one short-lived thread
// enters each namespace of a batch in turn, so enrolling many pods costs a thread
// per batch instead of a thread (or a process) per socket or command.
// - podSockets: a pod's sockets (configured, bound, listening) and its netns cookie.
// - podRouting: the in-pod reply route of the datapath (sysctl tcp_fwmark_accept,
//   a fwmark rule and a local default route in their own table) over rtnetlink,
//   which `ip rule`/`ip route` in a process per command did before.
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "netns.h"
#include "objects.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace ambient {
namespace {

constexpr size_t kMaxBatch = 1024;

std::vector<std::string> NetnsPaths(Napi::Env env, const Napi::Array& list, const char* what) {
  if (list.Length() == 0 || list.Length() > kMaxBatch) ThrowInvalid(env, std::string(what) + " must hold 1-1024 entries");
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (v.IsObject()) v = v.As<Napi::Object>().Get("netnsPath");
    if (!v.IsString() || v.As<Napi::String>().Utf8Value().empty())
      ThrowInvalid(env, std::string(what) + "[" + std::to_string(i) + "].netnsPath must be a non-empty string");
    paths.push_back(v.As<Napi::String>().Utf8Value());
  }
  return paths;
}

Napi::Value FailureError(Napi::Env env, const Failure& f, const std::string& path, const SocketOptions& o) {
  return ErrnoError(env, f.err, f.syscall, FailureMessage(f, path, o), false).Value();
}

// ---- podSockets(requests: { netnsPath, sockets: SocketOptions[] }[]) ----

struct SocketsRequest {
  std::vector<SocketOptions> sockets;
  std::vector<int> fds;
  uint64_t cookie = 0;
  size_t failed_socket = 0;  // which socket's options the failure belongs to
};

class PodSocketsWorker : public Napi::AsyncWorker {
 public:
  PodSocketsWorker(Napi::Env env, std::vector<std::string> paths, std::vector<SocketsRequest> requests)
      : Napi::AsyncWorker(env, "ambient:podSockets"), deferred_(Napi::Promise::Deferred::New(env)), paths_(std::move(paths)),
        requests_(std::move(requests)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    InEachNetns(
        paths_,
        [&](size_t i) -> Failure {
          SocketsRequest& r = requests_[i];
          // The namespace's cookie, from a socket made in it (a datagram one when none are asked for).
          int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
          if (probe < 0) return {errno, "socket"};
          socklen_t len = sizeof(r.cookie);
          int rc = getsockopt(probe, SOL_SOCKET, SO_NETNS_COOKIE, &r.cookie, &len);
          int err = errno;
          close(probe);
          if (rc) return {err, "getsockopt(SO_NETNS_COOKIE)"};
          for (size_t k = 0; k < r.sockets.size(); k++) {
            int fd;
            Failure f = MakeSocket(r.sockets[k], &fd);
            if (f.err) {
              for (int made : r.fds) close(made);
              r.fds.clear();
              r.failed_socket = k;
              return f;
            }
            r.fds.push_back(fd);
          }
          return {};
        },
        &failures_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Array out = Napi::Array::New(env, requests_.size());
    for (size_t i = 0; i < requests_.size(); i++) {
      const SocketsRequest& r = requests_[i];
      if (failures_[i].err) {
        const SocketOptions& o = r.sockets.empty() ? SocketOptions{} : r.sockets[r.failed_socket];
        out.Set(static_cast<uint32_t>(i), FailureError(env, failures_[i], paths_[i], o));
        continue;
      }
      Napi::Object result = Napi::Object::New(env);
      Napi::Array fds = Napi::Array::New(env, r.fds.size());
      for (size_t k = 0; k < r.fds.size(); k++) fds.Set(static_cast<uint32_t>(k), Napi::Number::New(env, r.fds[k]));
      result.Set("cookie", Napi::BigInt::New(env, r.cookie));
      result.Set("fds", fds);
      out.Set(static_cast<uint32_t>(i), result);
    }
    deferred_.Resolve(out);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> paths_;
  std::vector<SocketsRequest> requests_;
  std::vector<Failure> failures_;
};

Napi::Value PodSockets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowInvalid(env, "requests must be an array");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<std::string> paths = NetnsPaths(env, list, "requests");
  std::vector<SocketsRequest> requests(paths.size());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value sockets = list.Get(i).As<Napi::Object>().Get("sockets");
    if (!sockets.IsArray() || sockets.As<Napi::Array>().Length() > 16)
      ThrowInvalid(env, "requests[" + std::to_string(i) + "].sockets must be an array of 0-16 socket options");
    Napi::Array arr = sockets.As<Napi::Array>();
    for (uint32_t k = 0; k < arr.Length(); k++) requests[i].sockets.push_back(ParseSocketOptions(env, arr.Get(k)));
  }
  auto* worker = new PodSocketsWorker(env, std::move(paths), std::move(requests));
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ---- podRouting(netnsPaths: string[], { mark, table, priority }, add: boolean) ----

struct RoutingSettings {
  uint32_t mark = 0;
  uint32_t table = 0;
  uint32_t priority = 0;
};

// One rtnetlink request and its acknowledgement; returns the kernel's errno (0 on success).
int NetlinkCall(int fd, nlmsghdr* msg) {
  thread_local uint32_t seq = 0;
  msg->nlmsg_seq = ++seq;
  msg->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, msg, msg->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return errno;
  alignas(nlmsghdr) char reply[4096];
  for (;;) {
    ssize_t n = recv(fd, reply, sizeof(reply), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != msg->nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) return -static_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
    }
  }
}

void AddAttr(nlmsghdr* msg, uint16_t type, uint32_t value) {
  auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(msg) + NLMSG_ALIGN(msg->nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = RTA_LENGTH(sizeof(value));
  memcpy(RTA_DATA(rta), &value, sizeof(value));
  msg->nlmsg_len = NLMSG_ALIGN(msg->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

struct RuleMsg {
  nlmsghdr header;
  fib_rule_hdr rule;
  char attrs[64];
};

struct RouteMsg {
  nlmsghdr header;
  rtmsg route;
  char attrs[64];
};

// fwmark <mark> lookup <table>, with `priority` when adding (any priority when deleting).
int RuleCall(int fd, uint16_t type, const RoutingSettings& s, uint16_t flags) {
  RuleMsg m{};
  m.header.nlmsg_len = NLMSG_LENGTH(sizeof(fib_rule_hdr));
  m.header.nlmsg_type = type;
  m.header.nlmsg_flags = flags;
  m.rule.family = AF_INET;
  m.rule.action = FR_ACT_TO_TBL;
  m.rule.table = RT_TABLE_UNSPEC;
  AddAttr(&m.header, FRA_FWMARK, s.mark);
  AddAttr(&m.header, FRA_TABLE, s.table);
  if (type == RTM_NEWRULE) AddAttr(&m.header, FRA_PRIORITY, s.priority);
  return NetlinkCall(fd, &m.header);
}

// local 0.0.0.0/0 dev lo table <table> (lo is ifindex 1 in every namespace).
int RouteCall(int fd, uint16_t type, const RoutingSettings& s, uint16_t flags) {
  RouteMsg m{};
  m.header.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  m.header.nlmsg_type = type;
  m.header.nlmsg_flags = flags;
  m.route.rtm_family = AF_INET;
  m.route.rtm_table = RT_TABLE_UNSPEC;
  m.route.rtm_protocol = RTPROT_BOOT;
  m.route.rtm_scope = RT_SCOPE_HOST;
  m.route.rtm_type = RTN_LOCAL;
  AddAttr(&m.header, RTA_TABLE, s.table);
  AddAttr(&m.header, RTA_OIF, 1);
  return NetlinkCall(fd, &m.header);
}

Failure ConfigureRouting(const RoutingSettings& s, bool add) {
  if (add) {
    // Accepted connections carry the mark of the SYN: the application's replies to a
    // delivery socket are marked, and the rule sends them back over lo.
    int sysctl = open("/proc/sys/net/ipv4/tcp_fwmark_accept", O_WRONLY | O_CLOEXEC);
    if (sysctl < 0) return {errno, "open(/proc/sys/net/ipv4/tcp_fwmark_accept)"};
    ssize_t n = write(sysctl, "1\n", 2);
    int err = errno;
    close(sysctl);
    if (n != 2) return {n < 0 ? err : EIO, "write(/proc/sys/net/ipv4/tcp_fwmark_accept)"};
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return {errno, "socket(AF_NETLINK)"};
  Failure failure;
  if (add) {
    int err = RuleCall(fd, RTM_NEWRULE, s, NLM_F_CREATE | NLM_F_EXCL);
    if (err && err != EEXIST) failure = {err, "rtnetlink(RTM_NEWRULE)"};
    else if ((err = RouteCall(fd, RTM_NEWROUTE, s, NLM_F_CREATE | NLM_F_REPLACE))) failure = {err, "rtnetlink(RTM_NEWROUTE)"};
  } else {
    // Every such rule (an earlier version may have added one at another priority), then the route.
    int err = 0;
    for (int i = 0; i < 16 && (err = RuleCall(fd, RTM_DELRULE, s, 0)) == 0; i++) {
    }
    if (err && err != ENOENT) failure = {err, "rtnetlink(RTM_DELRULE)"};
    else if ((err = RouteCall(fd, RTM_DELROUTE, s, 0)) && err != ESRCH) failure = {err, "rtnetlink(RTM_DELROUTE)"};
  }
  close(fd);
  return failure;
}

std::string RoutingMessage(const Failure& f, const std::string& path) {
  if (f.syscall == "open" && f.err == ENOENT) return "no network namespace at " + path + ": is the pod still running?";
  if (f.syscall == "setns" && f.err == EINVAL) return path + " is not a network namespace: pass /proc/PID/ns/net or /run/netns/NAME";
  std::string message = f.syscall + " in network namespace " + path + " failed: " + Describe(f.err);
  if (f.err == EPERM || f.err == EACCES) return message + ": run as root or with CAP_NET_ADMIN and CAP_SYS_ADMIN";
  return message;
}

class PodRoutingWorker : public Napi::AsyncWorker {
 public:
  PodRoutingWorker(Napi::Env env, std::vector<std::string> paths, RoutingSettings settings, bool add)
      : Napi::AsyncWorker(env, "ambient:podRouting"), deferred_(Napi::Promise::Deferred::New(env)), paths_(std::move(paths)),
        settings_(settings), add_(add) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    InEachNetns(paths_, [&](size_t) { return ConfigureRouting(settings_, add_); }, &failures_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Array out = Napi::Array::New(env, paths_.size());
    for (size_t i = 0; i < paths_.size(); i++) {
      const Failure& f = failures_[i];
      out.Set(static_cast<uint32_t>(i), f.err ? ErrnoError(env, f.err, f.syscall, RoutingMessage(f, paths_[i]), false).Value() : env.Null());
    }
    deferred_.Resolve(out);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> paths_;
  RoutingSettings settings_;
  bool add_;
  std::vector<Failure> failures_;
};

uint32_t U32Field(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) ThrowInvalid(env, std::string(name) + " must be a number");
  int64_t n = v.As<Napi::Number>().Int64Value();
  if (n < 0 || n > 0xffffffffLL) ThrowInvalid(env, std::string(name) + " must be a 32-bit unsigned integer");
  return static_cast<uint32_t>(n);
}

Napi::Value PodRouting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowInvalid(env, "netnsPaths must be an array");
  std::vector<std::string> paths = NetnsPaths(env, info[0].As<Napi::Array>(), "netnsPaths");
  if (!info[1].IsObject()) ThrowInvalid(env, "settings must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  RoutingSettings settings{U32Field(env, o, "mark"), U32Field(env, o, "table"), U32Field(env, o, "priority")};
  if (settings.table == 0 || settings.table >= 253) ThrowInvalid(env, "table must be 1-252");
  auto* worker = new PodRoutingWorker(env, std::move(paths), settings, info[2].ToBoolean().Value());
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitPodnet(Napi::Env env, Napi::Object exports) {
  exports.Set("podSockets", Napi::Function::New(env, PodSockets));
  exports.Set("podRouting", Napi::Function::New(env, PodRouting));
}

}  // namespace ambient
