// Loaded programs and links as the kernel reports them: a link's program, a
// program's run-time statistics (run_cnt, run_time_ns: counted only while
// BPF_ENABLE_STATS or sysctl kernel.bpf_stats_enabled is on), and the
// BPF_ENABLE_STATS fd itself. Generic: any pinned link, any program id.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"
#include "objects.h"

namespace ambient {

namespace {

// Link info of a link fd (e.g. from pinnedOpen on a pinned link): { id, type, programId }.
Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (!FdInfoHas(fd, "link_type:")) ThrowErrno(env, EINVAL, "bpf_obj_get_info_by_fd", "fd " + std::to_string(fd) + " is not a BPF link (a map or a program?)", false);
  bpf_link_info link_info;
  memset(&link_info, 0, sizeof(link_info));
  uint32_t len = sizeof(link_info);
  if (bpf_obj_get_info_by_fd(fd, &link_info, &len)) ThrowCall(env, errno, "bpf_obj_get_info_by_fd", "link fd " + std::to_string(fd));
  Napi::Object out = Napi::Object::New(env);
  out.Set("id", link_info.id);
  out.Set("type", link_info.type);
  out.Set("programId", link_info.prog_id);
  return out;
}

// A new fd for the program with this id (close it with closeFd); ENOENT when it is gone.
Napi::Value ProgramFdById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t id = ArgInt(info, 0, "id");
  if (id <= 0) ThrowInvalid(env, "program id must be a positive integer, got " + std::to_string(id));
  int fd = bpf_prog_get_fd_by_id(static_cast<uint32_t>(id));
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) ThrowErrno(env, err, "bpf_prog_get_fd_by_id", "no BPF program with id " + std::to_string(id) + " (unloaded?)", false);
    ThrowCall(env, err, "bpf_prog_get_fd_by_id", "program " + std::to_string(id));
  }
  return Napi::Number::New(env, fd);
}

// Program info of a program fd: { id, name, type, runCount, runTimeNs, recursionMisses }
// (the counters as BigInt).
Napi::Value ProgramInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (!FdInfoHas(fd, "prog_type:")) ThrowErrno(env, EINVAL, "bpf_obj_get_info_by_fd", "fd " + std::to_string(fd) + " is not a BPF program (a map or a link?)", false);
  bpf_prog_info prog_info;
  memset(&prog_info, 0, sizeof(prog_info));
  uint32_t len = sizeof(prog_info);
  if (bpf_obj_get_info_by_fd(fd, &prog_info, &len)) ThrowCall(env, errno, "bpf_obj_get_info_by_fd", "program fd " + std::to_string(fd));
  Napi::Object out = Napi::Object::New(env);
  out.Set("id", prog_info.id);
  out.Set("name", prog_info.name);
  out.Set("type", prog_info.type);
  out.Set("runCount", Napi::BigInt::New(env, static_cast<uint64_t>(prog_info.run_cnt)));
  out.Set("runTimeNs", Napi::BigInt::New(env, static_cast<uint64_t>(prog_info.run_time_ns)));
  out.Set("recursionMisses", Napi::BigInt::New(env, static_cast<uint64_t>(prog_info.recursion_misses)));
  return out;
}

// BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): the kernel counts run_cnt and run_time_ns of
// every program while the returned fd is open (close it with closeFd).
Napi::Value EnableStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) {
    int err = -fd;
    if (err == EINVAL) ThrowErrno(env, err, "bpf_enable_stats", "the kernel lacks BPF_ENABLE_STATS (needs Linux >= 5.8)", false);
    ThrowCall(env, err, "bpf_enable_stats", "BPF_STATS_RUN_TIME");
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitPrograms(Napi::Env env, Napi::Object exports) {
  exports.Set("linkInfo", Napi::Function::New(env, LinkInfo));
  exports.Set("programFdById", Napi::Function::New(env, ProgramFdById));
  exports.Set("programInfo", Napi::Function::New(env, ProgramInfo));
  exports.Set("enableStats", Napi::Function::New(env, EnableStats));
}

}  // namespace ambient
