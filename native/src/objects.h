#pragma once
#include <napi.h>

namespace ambient {
void InitObjects(Napi::Env env, Napi::Object exports);
void InitMaps(Napi::Env env, Napi::Object exports);
void InitNetns(Napi::Env env, Napi::Object exports);
}  // namespace ambient
