// JS errors from failed system calls: code (errno name), errno, syscall and a
// message that says what to do.
#pragma once
#include <napi.h>
#include <string>

namespace ambient {

/** Records libbpf's last warning lines so a failing call can include them. */
void InstallLibbpfPrint();
std::string TakeLibbpfLog();

/** Throws a JS Error for errno `err` (positive) raised by `syscall`, about `what`. */
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& what);
Napi::Error MakeErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& what);
[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& message);

}  // namespace ambient
