// Attachments: a program to a cgroup (BPF link), to a network namespace (sk_lookup
// link), or to a sockmap (bpf_prog_attach; libbpf 1.1 has no sockmap link). Links
// live in a table keyed by integer ids owned by the JS side.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "errors.h"
#include "objects.h"

namespace ambient {

namespace {
std::map<int32_t, bpf_link*> links;
int32_t next_link = 1;

int32_t StoreLink(bpf_link* link) {
  int32_t id = next_link++;
  links[id] = link;
  return id;
}

bpf_link* LinkArg(const Napi::CallbackInfo& info, size_t index) {
  auto it = links.find(ArgInt(info, index, "linkId"));
  if (it == links.end()) ThrowInvalid(info.Env(), "unknown or closed BPF link id");
  return it->second;
}

Napi::Value AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectEntry& entry = ObjectArg(info, 0);
  std::string name = ArgString(info, 1, "program");
  std::string path = ArgString(info, 2, "cgroupPath");
  bpf_program* prog = LoadedProgramOf(env, entry, name);
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) ThrowErrno(env, err, "open", "no cgroup at " + path + ": create it under the cgroup v2 mount first", false);
    if (err == ENOTDIR) ThrowErrno(env, err, "open", path + " is not a cgroup directory", false);
    ThrowCall(env, err, "open", path);
  }
  ResetLibbpfLog();
  bpf_link* link = bpf_program__attach_cgroup(prog, fd);
  int err = errno;
  close(fd);
  if (!link) {
    if (err == EBADF) {
      ThrowErrno(env, err, "bpf_program__attach_cgroup",
                 path + " is not a cgroup v2 directory: use the cgroup2 mount (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified)");
    }
    ThrowCall(env, err, "bpf_program__attach_cgroup", name + " to " + path);
  }
  return Napi::Number::New(env, StoreLink(link));
}

Napi::Value AttachNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectEntry& entry = ObjectArg(info, 0);
  std::string name = ArgString(info, 1, "program");
  std::string path = ArgString(info, 2, "netnsPath");
  bpf_program* prog = LoadedProgramOf(env, entry, name);
  if (bpf_program__type(prog) != BPF_PROG_TYPE_SK_LOOKUP) {
    ThrowInvalid(env, "program " + name + " (SEC(\"" + bpf_program__section_name(prog) +
                          "\")) cannot attach to a network namespace: use an SEC(\"sk_lookup\") program");
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) ThrowErrno(env, err, "open", "no network namespace at " + path + ": is the pod still running?", false);
    ThrowCall(env, err, "open", path);
  }
  if (!OnNsfs(path)) {
    close(fd);
    ThrowErrno(env, EINVAL, "bpf_program__attach_netns",
               path + " is not a network namespace: pass /proc/PID/ns/net or /run/netns/NAME", false);
  }
  ResetLibbpfLog();
  bpf_link* link = bpf_program__attach_netns(prog, fd);
  int err = errno;
  close(fd);
  if (!link) {
    if ((err == EINVAL || err == EOPNOTSUPP) && libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_LOOKUP, nullptr) == 0) {
      ThrowErrno(env, err, "bpf_program__attach_netns", "kernel lacks sk_lookup (needs Linux >= 5.9)");
    }
    if (err == EINVAL) {
      ThrowErrno(env, err, "bpf_program__attach_netns",
                 "attaching " + name + " to " + path + " failed: invalid argument: is it a network namespace (not another kind)?");
    }
    if (err == E2BIG) {
      ThrowErrno(env, err, "bpf_program__attach_netns", "too many sk_lookup programs attached to " + path + " already");
    }
    ThrowCall(env, err, "bpf_program__attach_netns", name + " to " + path);
  }
  return Napi::Number::New(env, StoreLink(link));
}

Napi::Value AttachToMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectEntry& entry = ObjectArg(info, 0);
  std::string name = ArgString(info, 1, "program");
  int map_fd = ArgInt(info, 2, "mapFd");
  std::string kind = ArgString(info, 3, "attachType");
  bpf_attach_type type;
  if (kind == "sk_msg_verdict") {
    type = BPF_SK_MSG_VERDICT;
  } else if (kind == "sk_skb_stream_verdict") {
    type = BPF_SK_SKB_STREAM_VERDICT;
  } else {
    ThrowInvalid(env, "attachType must be sk_msg_verdict or sk_skb_stream_verdict, got " + kind);
  }
  bpf_program* prog = LoadedProgramOf(env, entry, name);
  if (bpf_prog_attach(bpf_program__fd(prog), map_fd, type, 0)) {
    ThrowCall(env, errno, "bpf_prog_attach", name + " to map fd " + std::to_string(map_fd) + " as " + kind);
  }
  return env.Undefined();
}

Napi::Value LinkPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_link* link = LinkArg(info, 0);
  std::string path = ArgString(info, 1, "path");
  ResetLibbpfLog();
  int err = bpf_link__pin(link, path.c_str());
  if (err) throw ErrnoError(env, err, "bpf_link__pin", PinMessage(err, "bpf_link__pin", path), false);
  return env.Undefined();
}

// Closes an fd when it leaves scope.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

struct BtfFree {
  void operator()(btf* b) const { btf__free(b); }
};

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct Global {
  std::string name;
  std::vector<uint8_t> value;
};

// Globals by program id. A loaded program's .rodata is frozen and the kernel does
// not reuse program ids, so one read per program serves every link to it (every
// pod's sk_lookup link shares one program).
std::map<uint32_t, std::vector<Global>> program_globals;

// The globals of program `prog_id`: its .rodata map read and laid out by that map's
// own BTF (the kernel's copy, so no object file on disk is needed).
std::vector<Global> ReadProgramGlobals(Napi::Env env, uint32_t prog_id, const std::string& path) {
  Fd prog(bpf_prog_get_fd_by_id(prog_id));
  if (prog.fd < 0) ThrowCall(env, errno, "bpf_prog_get_fd_by_id", "program " + std::to_string(prog_id) + " of " + path);
  bpf_prog_info prog_info{};
  uint32_t len = sizeof(prog_info);
  if (bpf_obj_get_info_by_fd(prog.fd, &prog_info, &len)) ThrowCall(env, errno, "bpf_obj_get_info_by_fd", "program of " + path);
  std::vector<uint32_t> map_ids(prog_info.nr_map_ids);
  prog_info = bpf_prog_info{};
  prog_info.nr_map_ids = map_ids.size();
  prog_info.map_ids = reinterpret_cast<uint64_t>(map_ids.data());
  len = sizeof(prog_info);
  if (bpf_obj_get_info_by_fd(prog.fd, &prog_info, &len)) ThrowCall(env, errno, "bpf_obj_get_info_by_fd", "maps of the program of " + path);
  std::vector<Global> out;
  for (uint32_t id : map_ids) {
    Fd map(bpf_map_get_fd_by_id(id));
    if (map.fd < 0) continue;  // gone meanwhile
    bpf_map_info map_info{};
    len = sizeof(map_info);
    if (bpf_obj_get_info_by_fd(map.fd, &map_info, &len)) continue;
    if (!EndsWith(map_info.name, ".rodata") || map_info.btf_id == 0 || map_info.btf_value_type_id == 0) continue;
    std::vector<uint8_t> value(map_info.value_size);
    uint32_t key = 0;
    if (bpf_map_lookup_elem(map.fd, &key, value.data())) ThrowCall(env, errno, "bpf_map_lookup_elem", std::string(map_info.name) + " of the program of " + path);
    std::unique_ptr<btf, BtfFree> types(btf__load_from_kernel_by_id(map_info.btf_id));
    if (!types) ThrowCall(env, errno, "btf__load_from_kernel_by_id", "BTF " + std::to_string(map_info.btf_id) + " of " + map_info.name);
    const btf_type* sec = btf__type_by_id(types.get(), map_info.btf_value_type_id);
    if (!sec || !btf_is_datasec(sec)) continue;
    const btf_var_secinfo* vars = btf_var_secinfos(sec);
    for (int i = 0; i < btf_vlen(sec); i++) {
      const btf_type* var = btf__type_by_id(types.get(), vars[i].type);
      if (!var || static_cast<size_t>(vars[i].offset) + vars[i].size > value.size()) continue;
      auto first = value.begin() + vars[i].offset;
      out.push_back({btf__name_by_offset(types.get(), var->name_off), std::vector<uint8_t>(first, first + vars[i].size)});
    }
  }
  return out;
}

// The `const volatile` globals the program behind a pinned link was loaded with:
// [{ name, value }]; empty when the program has none bound.
Napi::Value PinnedLinkGlobals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  Fd link(bpf_obj_get(path.c_str()));
  if (link.fd < 0) {
    int err = errno;
    if (err == ENOENT) ThrowErrno(env, err, "bpf_obj_get", "no pinned link at " + path, false);
    ThrowCall(env, err, "bpf_obj_get", path);
  }
  if (!FdInfoHas(link.fd, "link_type:")) ThrowErrno(env, EINVAL, "bpf_obj_get", path + " is pinned, but not a link (a map or a program?)", false);
  bpf_link_info link_info{};
  uint32_t len = sizeof(link_info);
  if (bpf_obj_get_info_by_fd(link.fd, &link_info, &len)) ThrowCall(env, errno, "bpf_obj_get_info_by_fd", path);
  auto cached = program_globals.find(link_info.prog_id);
  if (cached == program_globals.end()) {
    cached = program_globals.emplace(link_info.prog_id, ReadProgramGlobals(env, link_info.prog_id, path)).first;
  }
  Napi::Array out = Napi::Array::New(env, cached->second.size());
  for (uint32_t i = 0; i < cached->second.size(); i++) {
    const Global& g = cached->second[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", g.name);
    o.Set("value", Napi::Buffer<uint8_t>::Copy(env, g.value.data(), g.value.size()));
    out.Set(i, o);
  }
  return out;
}

Napi::Value LinkClose(const Napi::CallbackInfo& info) {
  auto it = links.find(ArgInt(info, 0, "linkId"));
  if (it != links.end()) {
    // Closes this process's fd of the link; a pinned link stays attached.
    bpf_link__destroy(it->second);
    links.erase(it);
  }
  return info.Env().Undefined();
}
}  // namespace

void InitLinks(Napi::Env env, Napi::Object exports) {
  exports.Set("attachCgroup", Napi::Function::New(env, AttachCgroup));
  exports.Set("attachNetns", Napi::Function::New(env, AttachNetns));
  exports.Set("attachToMap", Napi::Function::New(env, AttachToMap));
  exports.Set("linkPin", Napi::Function::New(env, LinkPin));
  exports.Set("linkClose", Napi::Function::New(env, LinkClose));
  exports.Set("pinnedLinkGlobals", Napi::Function::New(env, PinnedLinkGlobals));
}

}  // namespace ambient
