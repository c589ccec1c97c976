#include "errors.h"

#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace ambient {

namespace {
std::mutex log_mutex;
std::string log_tail;

int CapturePrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof(line), format, args);
  std::lock_guard<std::mutex> lock(log_mutex);
  log_tail += line;
  // Keep the tail: the verifier's last lines say why a load failed.
  if (log_tail.size() > 4096) log_tail.erase(0, log_tail.size() - 4096);
  return n;
}

const char* ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS";
    case ENOTSUP: return "EOPNOTSUPP";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENOTSOCK: return "ENOTSOCK";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case ENOEXEC: return "ENOEXEC";
    case ELOOP: return "ELOOP";
    case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return "EUNKNOWN";
  }
}

std::string Hint(int err, const std::string& syscall, const std::string& what) {
  switch (err) {
    case EPERM:
    case EACCES:
      return ": not permitted: run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN";
    case ENOENT:
      if (syscall == "bpf_obj_get") return ": no pinned object there: is the datapath loaded?";
      if (syscall == "open netns") return ": no network namespace at that path: is the pod still running?";
      return ": not found";
    case EOPNOTSUPP:
      return ": not supported by this kernel or object";
    case EINVAL:
      if (syscall == "bpf_obj_pin" || syscall == "bpf_link__pin")
        return ": the folder is not on a bpf filesystem: mount -t bpf bpf /sys/fs/bpf";
      return ": invalid argument";
    case E2BIG:
    case ENOSPC:
      return ": the map is full";
    default:
      return "";
  }
}
}  // namespace

void InstallLibbpfPrint() { libbpf_set_print(CapturePrint); }

std::string TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(log_mutex);
  std::string out;
  out.swap(log_tail);
  return out;
}

Napi::Error MakeErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& what) {
  if (err < 0) err = -err;
  std::string message = syscall + " " + what + " failed: " + strerror(err) + Hint(err, syscall, what);
  std::string log = TakeLibbpfLog();
  if (!log.empty()) message += "\nlibbpf: " + log;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& what) {
  throw MakeErrnoError(env, err, syscall, what);
}

void ThrowInvalid(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, "EINVAL"));
  error.Set("errno", Napi::Number::New(env, EINVAL));
  error.Set("syscall", Napi::String::New(env, "validate"));
  throw error;
}

}  // namespace ambient
