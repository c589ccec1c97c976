// BPF objects: open, set load-time globals, load, close, list programs and maps.
#include "objects.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <string>

#include "errors.h"

namespace ambient {

namespace {
std::map<int32_t, ObjectEntry> objects;
int32_t next_object = 1;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Napi::Value ObjectOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  std::string pin_root;
  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (info[1].IsString()) {
    pin_root = info[1].As<Napi::String>().Utf8Value();
    opts.pin_root_path = pin_root.c_str();
  } else if (!info[1].IsNull() && !info[1].IsUndefined()) {
    ThrowInvalid(env, "pinRoot must be a string or null");
  }
  if (access(path.c_str(), R_OK) != 0) {
    int err = errno;
    if (err == ENOENT) ThrowErrno(env, err, "bpf_object__open_file", "no BPF object file at " + path + ": build it (npm run build:bpf)");
    ThrowCall(env, err, "bpf_object__open_file", path);
  }
  ResetLibbpfLog();
  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  if (!obj) ThrowCall(env, errno, "bpf_object__open_file", path);
  int32_t handle = next_object++;
  objects[handle] = ObjectEntry{obj, path, false};
  return Napi::Number::New(env, handle);
}

Napi::Value ObjectSetGlobal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectEntry& entry = ObjectArg(info, 0);
  std::string name = ArgString(info, 1, "name");
  Napi::Buffer<uint8_t> value = ArgBuffer(info, 2, "value");
  if (entry.load_attempted) {
    ThrowInvalid(env, "global " + name + " of " + entry.path + " can only be set before load(): set it, then load");
  }
  const btf* btf = bpf_object__btf(entry.obj);
  if (!btf) ThrowErrno(env, ENOENT, "btf__find_by_name_kind", entry.path + " has no BTF: compile it with clang -g");
  int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) {
    ThrowErrno(env, ENOENT, "btf__find_by_name_kind",
               "no global " + name + " in " + entry.path + ": it has no .rodata (declare it `const volatile`)", false);
  }
  const btf_type* sec = btf__type_by_id(btf, sec_id);
  const btf_var_secinfo* vars = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); i++) {
    const btf_type* var = btf__type_by_id(btf, vars[i].type);
    if (!var || name != btf__name_by_offset(btf, var->name_off)) continue;
    if (vars[i].size != value.Length()) {
      ThrowInvalid(env, "global " + name + " of " + entry.path + " is " + std::to_string(vars[i].size) +
                            " bytes, got " + std::to_string(value.Length()) + ": encode it with its C type's size");
    }
    bpf_map* map = nullptr;
    bpf_map* rodata = nullptr;
    bpf_object__for_each_map(map, entry.obj) {
      if (bpf_map__is_internal(map) && EndsWith(bpf_map__name(map), ".rodata")) rodata = map;
    }
    if (!rodata) ThrowErrno(env, ENOENT, "bpf_map__initial_value", "no .rodata map in " + entry.path, false);
    size_t size = 0;
    // Before load this is libbpf's own writable copy of the section (const in the 1.1 API).
    void* data = const_cast<void*>(bpf_map__initial_value(rodata, &size));
    if (!data || static_cast<size_t>(vars[i].offset) + vars[i].size > size) {
      ThrowErrno(env, EINVAL, "bpf_map__initial_value", "global " + name + " lies outside .rodata of " + entry.path, false);
    }
    memcpy(static_cast<uint8_t*>(data) + vars[i].offset, value.Data(), value.Length());
    return env.Undefined();
  }
  ThrowErrno(env, ENOENT, "btf__find_by_name_kind",
             "no global " + name + " in .rodata of " + entry.path + ": check the name (a `const volatile` global)", false);
}

// Why a load failed beyond the errno: program types the kernel lacks.
std::string MissingProgramTypes(bpf_object* obj) {
  std::string out;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, obj) {
    bpf_prog_type type = bpf_program__type(prog);
    if (libbpf_probe_bpf_prog_type(type, nullptr) != 0) continue;  // 1: supported; <0: cannot tell
    const char* type_name = libbpf_bpf_prog_type_str(type);
    std::string t = type_name ? type_name : std::to_string(type);
    out += "; kernel lacks " + t + (type == BPF_PROG_TYPE_SK_LOOKUP ? " (needs Linux >= 5.9)" : " programs") +
           " (program " + bpf_program__name(prog) + ")";
  }
  return out;
}

Napi::Value ObjectLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectEntry& entry = ObjectArg(info, 0);
  if (entry.load_attempted) ThrowInvalid(env, entry.path + " was already loaded (or failed to): open it again");
  entry.load_attempted = true;
  ResetLibbpfLog();
  int err = bpf_object__load(entry.obj);
  if (!err) return env.Undefined();
  err = -err;
  std::string log = TakeLibbpfLog();
  std::string message = "bpf_object__load(" + entry.path + ") failed: " + Describe(err);
  if (err == EACCES && geteuid() == 0) {
    message += ": the verifier rejected a program (see its log below)";
  } else {
    message += Advice(err);
  }
  if (err == EINVAL || err == EOPNOTSUPP || err == 524) message += MissingProgramTypes(entry.obj);
  if (!log.empty()) message += "\n" + log;
  throw ErrnoError(env, err, "bpf_object__load", message, false);
}

Napi::Value ObjectClose(const Napi::CallbackInfo& info) {
  auto it = objects.find(ArgInt(info, 0, "handle"));
  if (it != objects.end()) {
    bpf_object__close(it->second.obj);
    objects.erase(it);
  }
  return info.Env().Undefined();
}

Napi::Value ObjectPrograms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectEntry& entry = ObjectArg(info, 0);
  Napi::Array out = Napi::Array::New(env);
  bpf_program* prog = nullptr;
  uint32_t i = 0;
  bpf_object__for_each_program(prog, entry.obj) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", bpf_program__name(prog));
    p.Set("section", bpf_program__section_name(prog));
    p.Set("fd", std::max(bpf_program__fd(prog), -1));  // -1 before load
    out.Set(i++, p);
  }
  return out;
}

Napi::Value ObjectMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectEntry& entry = ObjectArg(info, 0);
  Napi::Array out = Napi::Array::New(env);
  bpf_map* map = nullptr;
  uint32_t i = 0;
  bpf_object__for_each_map(map, entry.obj) {
    Napi::Object m = Napi::Object::New(env);
    m.Set("name", bpf_map__name(map));
    m.Set("fd", std::max(bpf_map__fd(map), -1));
    m.Set("type", static_cast<double>(bpf_map__type(map)));
    m.Set("keySize", bpf_map__key_size(map));
    m.Set("valueSize", bpf_map__value_size(map));
    m.Set("maxEntries", bpf_map__max_entries(map));
    out.Set(i++, m);
  }
  return out;
}
}  // namespace

ObjectEntry& ObjectArg(const Napi::CallbackInfo& info, size_t index) {
  auto it = objects.find(ArgInt(info, index, "handle"));
  if (it == objects.end()) ThrowInvalid(info.Env(), "unknown or closed BPF object handle: open the object again");
  return it->second;
}

bpf_program* ProgramOf(Napi::Env env, ObjectEntry& entry, const std::string& name) {
  bpf_program* prog = bpf_object__find_program_by_name(entry.obj, name.c_str());
  if (prog) return prog;
  std::string names;
  bpf_object__for_each_program(prog, entry.obj) names += std::string(names.empty() ? "" : ", ") + bpf_program__name(prog);
  ThrowErrno(env, ENOENT, "bpf_object__find_program_by_name",
             "no program " + name + " in " + entry.path + " (it has: " + names + ")", false);
}

bpf_program* LoadedProgramOf(Napi::Env env, ObjectEntry& entry, const std::string& name) {
  bpf_program* prog = ProgramOf(env, entry, name);
  if (bpf_program__fd(prog) < 0) ThrowInvalid(env, "program " + name + " of " + entry.path + " is not loaded: call load() first");
  return prog;
}

void InitObjects(Napi::Env env, Napi::Object exports) {
  exports.Set("objectOpen", Napi::Function::New(env, ObjectOpen));
  exports.Set("objectSetGlobal", Napi::Function::New(env, ObjectSetGlobal));
  exports.Set("objectLoad", Napi::Function::New(env, ObjectLoad));
  exports.Set("objectClose", Napi::Function::New(env, ObjectClose));
  exports.Set("objectPrograms", Napi::Function::New(env, ObjectPrograms));
  exports.Set("objectMaps", Napi::Function::New(env, ObjectMaps));
}

}  // namespace ambient
