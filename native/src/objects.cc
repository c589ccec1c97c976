// BPF objects, programs and links: open/load/close, attach to a cgroup, a network
// namespace or a sockmap, pin. Objects and links live in tables keyed by integer
// handles owned by the JS side.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>

#include "errors.h"
#include "objects.h"

namespace ambient {

namespace {
std::map<int, bpf_object*> objects;
std::map<int, bpf_link*> links;
int next_object = 1;
int next_link = 1;

bpf_object* ObjectOf(Napi::Env env, const Napi::Value& handle) {
  auto it = objects.find(handle.As<Napi::Number>().Int32Value());
  if (it == objects.end()) ThrowInvalid(env, "unknown or closed BPF object handle");
  return it->second;
}

bpf_program* ProgramOf(Napi::Env env, bpf_object* obj, const std::string& name) {
  bpf_program* prog = bpf_object__find_program_by_name(obj, name.c_str());
  if (!prog) ThrowErrno(env, ENOENT, "bpf_object__find_program_by_name", "program " + name);
  return prog;
}

int StoreLink(Napi::Env env, bpf_link* link, const std::string& syscall, const std::string& what) {
  if (!link) ThrowErrno(env, errno, syscall, what);
  int id = next_link++;
  links[id] = link;
  return id;
}

bpf_link* LinkOf(Napi::Env env, const Napi::Value& id) {
  auto it = links.find(id.As<Napi::Number>().Int32Value());
  if (it == links.end()) ThrowInvalid(env, "unknown or closed BPF link id");
  return it->second;
}

Napi::Value ObjectOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  std::string pin_root;
  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (info[1].IsString()) {
    pin_root = info[1].As<Napi::String>().Utf8Value();
    opts.pin_root_path = pin_root.c_str();
  }
  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  if (!obj) ThrowErrno(env, errno, "bpf_object__open_file", path);
  int handle = next_object++;
  objects[handle] = obj;
  return Napi::Number::New(env, handle);
}

Napi::Value ObjectSetGlobal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = ObjectOf(env, info[0]);
  std::string name = info[1].As<Napi::String>();
  Napi::Buffer<uint8_t> value = info[2].As<Napi::Buffer<uint8_t>>();
  const btf* btf = bpf_object__btf(obj);
  if (!btf) ThrowErrno(env, ENOENT, "bpf_object__btf", "BTF of the object (compile with -g)");
  int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) ThrowErrno(env, ENOENT, "btf__find_by_name_kind", ".rodata section (no const volatile globals)");
  const btf_type* sec = btf__type_by_id(btf, sec_id);
  const btf_var_secinfo* vars = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); i++) {
    const btf_type* var = btf__type_by_id(btf, vars[i].type);
    if (name != btf__name_by_offset(btf, var->name_off)) continue;
    if (vars[i].size != value.Length()) {
      ThrowInvalid(env, "global " + name + " is " + std::to_string(vars[i].size) + " bytes, got " +
                            std::to_string(value.Length()));
    }
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, obj) {
      const char* map_name = bpf_map__name(map);
      size_t len = strlen(map_name);
      if (len >= 7 && strcmp(map_name + len - 7, ".rodata") == 0) break;
    }
    if (!map) ThrowErrno(env, ENOENT, "bpf_object__for_each_map", ".rodata map");
    size_t size = 0;
    // libbpf 1.1 returns const, but before load this is the object's own writable copy.
    void* data = const_cast<void*>(bpf_map__initial_value(map, &size));
    if (!data || vars[i].offset + vars[i].size > size) ThrowErrno(env, EINVAL, "bpf_map__initial_value", ".rodata");
    memcpy(static_cast<uint8_t*>(data) + vars[i].offset, value.Data(), value.Length());
    return env.Undefined();
  }
  ThrowErrno(env, ENOENT, "objectSetGlobal", "global " + name);
}

Napi::Value ObjectLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = ObjectOf(env, info[0]);
  TakeLibbpfLog();
  int err = bpf_object__load(obj);
  if (err) ThrowErrno(env, err, "bpf_object__load", bpf_object__name(obj));
  return env.Undefined();
}

Napi::Value ObjectClose(const Napi::CallbackInfo& info) {
  int handle = info[0].As<Napi::Number>().Int32Value();
  auto it = objects.find(handle);
  if (it != objects.end()) {
    bpf_object__close(it->second);
    objects.erase(it);
  }
  return info.Env().Undefined();
}

Napi::Value ObjectPrograms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = ObjectOf(env, info[0]);
  Napi::Array out = Napi::Array::New(env);
  bpf_program* prog = nullptr;
  uint32_t i = 0;
  bpf_object__for_each_program(prog, obj) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", bpf_program__name(prog));
    p.Set("section", bpf_program__section_name(prog));
    p.Set("fd", bpf_program__fd(prog));
    out.Set(i++, p);
  }
  return out;
}

Napi::Value ObjectMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = ObjectOf(env, info[0]);
  Napi::Array out = Napi::Array::New(env);
  bpf_map* map = nullptr;
  uint32_t i = 0;
  bpf_object__for_each_map(map, obj) {
    Napi::Object m = Napi::Object::New(env);
    m.Set("name", bpf_map__name(map));
    m.Set("fd", bpf_map__fd(map));
    m.Set("type", static_cast<double>(bpf_map__type(map)));
    m.Set("keySize", bpf_map__key_size(map));
    m.Set("valueSize", bpf_map__value_size(map));
    m.Set("maxEntries", bpf_map__max_entries(map));
    out.Set(i++, m);
  }
  return out;
}

Napi::Value AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = ObjectOf(env, info[0]);
  std::string name = info[1].As<Napi::String>();
  std::string path = info[2].As<Napi::String>();
  bpf_program* prog = ProgramOf(env, obj, name);
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, errno, "open cgroup", path);
  bpf_link* link = bpf_program__attach_cgroup(prog, fd);
  int saved = errno;
  close(fd);
  errno = saved;
  return Napi::Number::New(env, StoreLink(env, link, "bpf_program__attach_cgroup", name + " to " + path));
}

Napi::Value AttachNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = ObjectOf(env, info[0]);
  std::string name = info[1].As<Napi::String>();
  std::string path = info[2].As<Napi::String>();
  bpf_program* prog = ProgramOf(env, obj, name);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, errno, "open netns", path);
  bpf_link* link = bpf_program__attach_netns(prog, fd);
  int saved = errno;
  close(fd);
  errno = saved;
  if (!link && (saved == EINVAL || saved == EOPNOTSUPP)) {
    ThrowErrno(env, saved, "bpf_program__attach_netns",
               name + " to " + path + " (does the kernel support sk_lookup? it needs Linux >= 5.9)");
  }
  return Napi::Number::New(env, StoreLink(env, link, "bpf_program__attach_netns", name + " to " + path));
}

Napi::Value AttachToMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = ObjectOf(env, info[0]);
  std::string name = info[1].As<Napi::String>();
  int map_fd = info[2].As<Napi::Number>().Int32Value();
  std::string kind = info[3].As<Napi::String>();
  bpf_attach_type type;
  if (kind == "sk_msg_verdict") type = BPF_SK_MSG_VERDICT;
  else if (kind == "sk_skb_stream_verdict") type = BPF_SK_SKB_STREAM_VERDICT;
  else ThrowInvalid(env, "attach type must be sk_msg_verdict or sk_skb_stream_verdict, got " + kind);
  bpf_program* prog = ProgramOf(env, obj, name);
  int err = bpf_prog_attach(bpf_program__fd(prog), map_fd, type, 0);
  if (err) ThrowErrno(env, errno, "bpf_prog_attach", name);
  return env.Undefined();
}

Napi::Value LinkPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_link* link = LinkOf(env, info[0]);
  std::string path = info[1].As<Napi::String>();
  int err = bpf_link__pin(link, path.c_str());
  if (err) ThrowErrno(env, err, "bpf_link__pin", path);
  return env.Undefined();
}

Napi::Value LinkClose(const Napi::CallbackInfo& info) {
  int id = info[0].As<Napi::Number>().Int32Value();
  auto it = links.find(id);
  if (it != links.end()) {
    // For fd-based links this closes our fd; a pinned link stays attached.
    bpf_link__destroy(it->second);
    links.erase(it);
  }
  return info.Env().Undefined();
}
}  // namespace

void InitObjects(Napi::Env env, Napi::Object exports) {
  exports.Set("objectOpen", Napi::Function::New(env, ObjectOpen));
  exports.Set("objectSetGlobal", Napi::Function::New(env, ObjectSetGlobal));
  exports.Set("objectLoad", Napi::Function::New(env, ObjectLoad));
  exports.Set("objectClose", Napi::Function::New(env, ObjectClose));
  exports.Set("objectPrograms", Napi::Function::New(env, ObjectPrograms));
  exports.Set("objectMaps", Napi::Function::New(env, ObjectMaps));
  exports.Set("attachCgroup", Napi::Function::New(env, AttachCgroup));
  exports.Set("attachNetns", Napi::Function::New(env, AttachNetns));
  exports.Set("attachToMap", Napi::Function::New(env, AttachToMap));
  exports.Set("linkPin", Napi::Function::New(env, LinkPin));
  exports.Set("linkClose", Napi::Function::New(env, LinkClose));
}

}  // namespace ambient
