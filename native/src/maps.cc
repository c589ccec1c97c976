// Map operations over fds: generic, Buffers in and out. Sizes are validated in
// native/index.ts, which caches each map's metadata.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "objects.h"

namespace ambient {

namespace {
int FdOf(const Napi::Value& v) { return v.As<Napi::Number>().Int32Value(); }

Napi::Value PinnedOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, errno, "bpf_obj_get", path);
  return Napi::Number::New(env, fd);
}

Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOf(info[0]);
  bpf_map_info map_info;
  memset(&map_info, 0, sizeof(map_info));
  uint32_t len = sizeof(map_info);
  if (bpf_obj_get_info_by_fd(fd, &map_info, &len)) ThrowErrno(env, errno, "bpf_obj_get_info_by_fd", "map fd " + std::to_string(fd));
  Napi::Object m = Napi::Object::New(env);
  m.Set("name", map_info.name);
  m.Set("fd", fd);
  m.Set("type", static_cast<double>(map_info.type));
  m.Set("keySize", map_info.key_size);
  m.Set("valueSize", map_info.value_size);
  m.Set("maxEntries", map_info.max_entries);
  return m;
}

Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOf(info[0]);
  auto key = info[1].As<Napi::Buffer<uint8_t>>();
  auto value = info[2].As<Napi::Buffer<uint8_t>>();
  uint64_t flags = static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value());
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags)) ThrowErrno(env, errno, "bpf_map_update_elem", "map fd " + std::to_string(fd));
  return env.Undefined();
}

Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOf(info[0]);
  auto key = info[1].As<Napi::Buffer<uint8_t>>();
  size_t size = info[2].As<Napi::Number>().Uint32Value();
  auto out = Napi::Buffer<uint8_t>::New(env, size);
  if (bpf_map_lookup_elem(fd, key.Data(), out.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, "bpf_map_lookup_elem", "map fd " + std::to_string(fd));
  }
  return out;
}

Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOf(info[0]);
  auto key = info[1].As<Napi::Buffer<uint8_t>>();
  if (bpf_map_delete_elem(fd, key.Data())) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "bpf_map_delete_elem", "map fd " + std::to_string(fd));
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value MapNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOf(info[0]);
  size_t size = info[2].As<Napi::Number>().Uint32Value();
  auto out = Napi::Buffer<uint8_t>::New(env, size);
  const void* key = info[1].IsNull() ? nullptr : info[1].As<Napi::Buffer<uint8_t>>().Data();
  if (bpf_map_get_next_key(fd, key, out.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, "bpf_map_get_next_key", "map fd " + std::to_string(fd));
  }
  return out;
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(FdOf(info[0]));
  return info.Env().Undefined();
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), n, "libbpf_num_possible_cpus", "/sys/devices/system/cpu/possible");
  return Napi::Number::New(info.Env(), n);
}
}  // namespace

void InitMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("pinnedOpen", Napi::Function::New(env, PinnedOpen));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapNextKey", Napi::Function::New(env, MapNextKey));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
}

}  // namespace ambient
