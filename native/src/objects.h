// The addon's tables: BPF objects by integer handle, links by integer id. Both are
// owned by the JS side, which closes them explicitly.
#pragma once
#include <napi.h>

#include <string>

struct bpf_object;
struct bpf_program;

namespace ambient {

struct ObjectEntry {
  bpf_object* obj = nullptr;
  std::string path;
  bool load_attempted = false;  // libbpf allows one load; .rodata is read-only after it
};

/** The live object of handle argument `index`, or throws EINVAL. */
ObjectEntry& ObjectArg(const Napi::CallbackInfo& info, size_t index);
/** Program `name` of `entry`, or throws ENOENT naming the programs there are. */
bpf_program* ProgramOf(Napi::Env env, ObjectEntry& entry, const std::string& name);
/** As ProgramOf, and loaded (has an fd), or throws EINVAL telling to load first. */
bpf_program* LoadedProgramOf(Napi::Env env, ObjectEntry& entry, const std::string& name);

/** Whether /proc/self/fdinfo of `fd` has a line starting with `key` (true without procfs). */
bool FdInfoHas(int fd, const char* key);

void InitObjects(Napi::Env env, Napi::Object exports);
void InitLinks(Napi::Env env, Napi::Object exports);
void InitMaps(Napi::Env env, Napi::Object exports);
void InitPrograms(Napi::Env env, Napi::Object exports);
void InitNetns(Napi::Env env, Napi::Object exports);
void InitPodnet(Napi::Env env, Napi::Object exports);
void InitFdpass(Napi::Env env, Napi::Object exports);
void InitHbone(Napi::Env env, Napi::Object exports);

}  // namespace ambient
