// JS errors from failed system or libbpf calls: `code` (errno name), `errno`
// (positive), `syscall` and a lowercase message that says what to do. Also the
// capture of libbpf's own log lines, and checked argument readers.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

namespace ambient {

/** Routes libbpf's warnings into a buffer instead of stderr. */
void InstallLibbpfPrint();
/** Forgets captured libbpf lines; call before a libbpf call whose log may be reported. */
void ResetLibbpfLog();
/** The captured lines (tail), emptied. */
std::string TakeLibbpfLog();

/** Errno name ('ENOENT'); libbpf's own error numbers (4000+) become 'ENOEXEC'. */
std::string ErrnoName(int err);
/** strerror, or libbpf_strerror for libbpf's numbers, starting lowercase. */
std::string Describe(int err);
/** The generic advice for `err`: permissions, a full map, ... or "". */
std::string Advice(int err);

/** True when `path`, or its nearest existing ancestor, is on a bpf filesystem;
 *  `checked` receives the path actually examined. */
bool OnBpffs(const std::string& path, std::string* checked);
/** True when `path` is a namespace file on nsfs (/proc/PID/ns/net, /run/netns/NAME). */
bool OnNsfs(const std::string& path);
/** The message for a failed pin or pinned-object call on `path`. */
std::string PinMessage(int err, const std::string& syscall, const std::string& path);

/** An Error with code/errno/syscall; appends the libbpf log tail when `with_log`. */
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& message,
                       bool with_log = true);
/** Throws ErrnoError with the message "<syscall>(<target>) failed: <describe><advice>". */
[[noreturn]] void ThrowCall(Napi::Env env, int err, const std::string& syscall, const std::string& target);
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message,
                             bool with_log = true);
[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& message);

int32_t ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t index, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* name);

}  // namespace ambient
