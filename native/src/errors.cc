#include "errors.h"

#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <sys/statfs.h>

#include <cctype>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif
#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace ambient {

namespace {
constexpr size_t kLogTail = 6144;
std::mutex log_mutex;
std::string log_tail;

int CapturePrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[2048];
  int n = vsnprintf(line, sizeof(line), format, args);
  std::lock_guard<std::mutex> lock(log_mutex);
  log_tail += line;
  // Keep the tail: the verifier's last lines say why a load failed.
  if (log_tail.size() > kLogTail) log_tail.erase(0, log_tail.size() - kLogTail);
  return n;
}

bool IsLibbpfErrno(int err) { return err >= __LIBBPF_ERRNO__START && err < __LIBBPF_ERRNO__END; }

std::string Parent(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
}  // namespace

void InstallLibbpfPrint() { libbpf_set_print(CapturePrint); }

void ResetLibbpfLog() {
  std::lock_guard<std::mutex> lock(log_mutex);
  log_tail.clear();
}

std::string TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(log_mutex);
  std::string out;
  out.swap(log_tail);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string ErrnoName(int err) {
  if (err < 0) err = -err;
  if (IsLibbpfErrno(err)) return "ENOEXEC";
  if (err == 524) return "ENOTSUPP";  // kernel-internal, leaks from bpf()
  const char* name = strerrorname_np(err);
  return name ? name : "EUNKNOWN";
}

std::string Describe(int err) {
  if (err < 0) err = -err;
  std::string text;
  if (IsLibbpfErrno(err) || err == 524) {
    char buf[256];
    libbpf_strerror(err, buf, sizeof(buf));
    text = buf;
  } else {
    text = strerror(err);
  }
  // "No such file" -> "no such file", but keep acronyms ("BPF object format invalid").
  if (text.size() > 1 && islower(static_cast<unsigned char>(text[1])))
    text[0] = static_cast<char>(tolower(static_cast<unsigned char>(text[0])));
  return text;
}

std::string Advice(int err) {
  if (err < 0) err = -err;
  switch (err) {
    case EPERM:
    case EACCES:
      return ": run as root or with CAP_BPF and CAP_NET_ADMIN";
    case E2BIG:
      return ": too big, or the map is full (raise max_entries)";
    case ENOSPC:
      return ": no space left in the map (raise max_entries)";
    case EBADF:
      return ": the file descriptor is not open";
    case 524:  // ENOTSUPP
    case EOPNOTSUPP:
      return ": not supported by this kernel for this object";
    default:
      if (IsLibbpfErrno(err)) return ": the object file is not a usable BPF ELF object (rebuild it with clang -target bpf -g)";
      return "";
  }
}

bool OnBpffs(const std::string& path, std::string* checked) {
  std::string p = path.empty() ? "." : path;
  for (int depth = 0; depth < 64; depth++) {
    struct statfs fs;
    if (statfs(p.c_str(), &fs) == 0) {
      if (checked) *checked = p;
      return static_cast<uint32_t>(fs.f_type) == BPF_FS_MAGIC;
    }
    if (p == "/" || p == ".") break;
    p = Parent(p);
  }
  if (checked) *checked = p;
  return false;
}

bool OnNsfs(const std::string& path) {
  struct statfs fs;
  return statfs(path.c_str(), &fs) == 0 && static_cast<uint32_t>(fs.f_type) == NSFS_MAGIC;
}

std::string PinMessage(int err, const std::string& syscall, const std::string& path) {
  if (err < 0) err = -err;
  std::string checked;
  bool bpffs = OnBpffs(path, &checked);
  if (!bpffs && (err == ENOENT || err == EPERM || err == EACCES || err == EINVAL)) {
    if (checked == "/sys/fs/bpf" || checked == "/sys/fs" || checked == "/sys")
      return "/sys/fs/bpf is not a bpf filesystem: mount -t bpf bpf /sys/fs/bpf (needed for " + path + ")";
    return path + " is not on a bpf filesystem (" + checked +
           " is not bpffs): use a path under a bpffs mount, e.g. /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)";
  }
  switch (err) {
    case ENOENT:
      if (syscall == "bpf_obj_get") return "no pinned object at " + path + ": is the datapath loaded?";
      return syscall + "(" + path + ") failed: " + Describe(err) + ": create the parent folder first";
    case EEXIST:
      return syscall + "(" + path + ") failed: something is already pinned there: remove it or pick another path";
    case EBUSY:
      if (syscall == "bpf_link__pin") return syscall + "(" + path + ") failed: this link is already pinned (once per link)";
      return syscall + "(" + path + ") failed: " + Describe(err);
    default:
      return syscall + "(" + path + ") failed: " + Describe(err) + Advice(err);
  }
}

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& message, bool with_log) {
  if (err < 0) err = -err;
  if (err == 0) err = EIO;  // a failure that did not set errno; never report success as the cause
  std::string full = message;
  std::string log = with_log ? TakeLibbpfLog() : "";
  if (!log.empty()) full += "\n" + log;  // libbpf's lines start with "libbpf: "
  Napi::Error error = Napi::Error::New(env, full);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, IsLibbpfErrno(err) ? ENOEXEC : err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowCall(Napi::Env env, int err, const std::string& syscall, const std::string& target) {
  throw ErrnoError(env, err, syscall, syscall + "(" + target + ") failed: " + Describe(err) + Advice(err));
}

void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message, bool with_log) {
  throw ErrnoError(env, err, syscall, message, with_log);
}

void ThrowInvalid(Napi::Env env, const std::string& message) {
  throw ErrnoError(env, EINVAL, "validate", message, false);
}

int32_t ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsNumber()) ThrowInvalid(info.Env(), std::string(name) + " must be a number");
  return info[index].As<Napi::Number>().Int32Value();
}

std::string ArgString(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsString()) ThrowInvalid(info.Env(), std::string(name) + " must be a string");
  return info[index].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsBuffer()) ThrowInvalid(info.Env(), std::string(name) + " must be a Buffer");
  return info[index].As<Napi::Buffer<uint8_t>>();
}

}  // namespace ambient
