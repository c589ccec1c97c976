// Map operations over fds: generic, Buffers in and out. Sizes are validated in
// native/index.ts, which caches each map's metadata; these functions trust them.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "errors.h"
#include "objects.h"

namespace ambient {

namespace {
std::string MapTarget(int fd) { return "map fd " + std::to_string(fd); }

Napi::Value PinnedOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    int err = errno;
    throw ErrnoError(env, err, "bpf_obj_get", PinMessage(err, "bpf_obj_get", path), false);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  bpf_map_info map_info;
  memset(&map_info, 0, sizeof(map_info));
  uint32_t len = sizeof(map_info);
  if (bpf_obj_get_info_by_fd(fd, &map_info, &len)) {
    int err = errno;
    if (err == EINVAL) ThrowErrno(env, err, "bpf_obj_get_info_by_fd", "fd " + std::to_string(fd) + " is not a BPF map", false);
    ThrowCall(env, err, "bpf_obj_get_info_by_fd", MapTarget(fd));
  }
  if (!FdInfoHas(fd, "map_type:")) ThrowErrno(env, EINVAL, "bpf_obj_get_info_by_fd", "fd " + std::to_string(fd) + " is not a BPF map (a program or link?)", false);
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
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  auto value = ArgBuffer(info, 2, "value");
  if (!info[3].IsNumber()) ThrowInvalid(env, "flags must be a number");
  uint64_t flags = static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value());
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags)) ThrowCall(env, errno, "bpf_map_update_elem", MapTarget(fd));
  return env.Undefined();
}

Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  int32_t size = ArgInt(info, 2, "valueSize");
  if (size <= 0) ThrowInvalid(env, "valueSize must be positive, got " + std::to_string(size));
  auto out = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(size));
  if (bpf_map_lookup_elem(fd, key.Data(), out.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowCall(env, errno, "bpf_map_lookup_elem", MapTarget(fd));
  }
  return out;
}

Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  if (bpf_map_delete_elem(fd, key.Data())) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowCall(env, errno, "bpf_map_delete_elem", MapTarget(fd));
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value MapNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  const void* key = info[1].IsNull() ? nullptr : ArgBuffer(info, 1, "key").Data();
  int32_t size = ArgInt(info, 2, "keySize");
  if (size <= 0) ThrowInvalid(env, "keySize must be positive, got " + std::to_string(size));
  auto out = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(size));
  if (bpf_map_get_next_key(fd, key, out.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowCall(env, errno, "bpf_map_get_next_key", MapTarget(fd));
  }
  return out;
}

// Up to maxKeys keys (and, with valueSize > 0, their values) in one call: the walk
// costs a syscall per key either way, but not a trip through JS per key.
Napi::Value MapWalk(const Napi::CallbackInfo& info, bool values) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int32_t key_size = ArgInt(info, 1, "keySize");
  int32_t max_keys = ArgInt(info, 2, "maxKeys");
  int32_t value_size = values ? ArgInt(info, 3, "valueSize") : 0;
  if (key_size <= 0) ThrowInvalid(env, "keySize must be positive, got " + std::to_string(key_size));
  if (max_keys < 0) ThrowInvalid(env, "maxKeys must not be negative, got " + std::to_string(max_keys));
  if (values && value_size <= 0) ThrowInvalid(env, "valueSize must be positive, got " + std::to_string(value_size));
  std::string keys;
  std::string vals;
  std::string prev;
  std::string key(static_cast<size_t>(key_size), '\0');
  std::string value(static_cast<size_t>(value_size), '\0');
  for (int32_t i = 0; i < max_keys; i++) {
    if (bpf_map_get_next_key(fd, prev.empty() ? nullptr : prev.data(), key.data())) {
      if (errno == ENOENT) break;
      ThrowCall(env, errno, "bpf_map_get_next_key", MapTarget(fd));
    }
    prev = key;
    if (values && bpf_map_lookup_elem(fd, key.data(), value.data())) {
      if (errno == ENOENT) continue;  // deleted meanwhile: left out
      ThrowCall(env, errno, "bpf_map_lookup_elem", MapTarget(fd));
    }
    keys.append(key);
    if (values) vals.append(value);
  }
  auto k = Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(keys.data()), keys.size());
  if (!values) return k;
  Napi::Object out = Napi::Object::New(env);
  out.Set("keys", k);
  out.Set("values", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(vals.data()), vals.size()));
  return out;
}

Napi::Value MapKeys(const Napi::CallbackInfo& info) { return MapWalk(info, false); }
Napi::Value MapEntries(const Napi::CallbackInfo& info) { return MapWalk(info, true); }

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(ArgInt(info, 0, "fd"));
  return info.Env().Undefined();
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n <= 0) ThrowCall(info.Env(), n < 0 ? -n : EIO, "libbpf_num_possible_cpus", "/sys/devices/system/cpu/possible");
  return Napi::Number::New(info.Env(), n);
}
}  // namespace

// The kernel fills bpf_*_info from an fd of another kind too (with its own layout):
// /proc/self/fdinfo tells maps ("map_type:"), programs and links ("link_type:") apart.
bool FdInfoHas(int fd, const char* key) {
  std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
  FILE* f = fopen(path.c_str(), "re");
  if (!f) return true;  // no procfs: trust the caller
  char line[256];
  bool found = false;
  size_t n = strlen(key);
  while (fgets(line, sizeof(line), f)) {
    if (strncmp(line, key, n) == 0) found = true;
  }
  fclose(f);
  return found;
}

void InitMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("pinnedOpen", Napi::Function::New(env, PinnedOpen));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapNextKey", Napi::Function::New(env, MapNextKey));
  exports.Set("mapKeys", Napi::Function::New(env, MapKeys));
  exports.Set("mapEntries", Napi::Function::New(env, MapEntries));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
}

}  // namespace ambient
