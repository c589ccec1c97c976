// ambient_native: a thin, generic Node-API layer over libbpf and a few socket
// calls. See native/binding.d.ts for the contract and native/index.ts for the
// typed, validating wrapper.
#include <napi.h>

#include "errors.h"
#include "objects.h"

namespace ambient {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  InitObjects(env, exports);
  InitLinks(env, exports);
  InitMaps(env, exports);
  InitPrograms(env, exports);
  InitNetns(env, exports);
  InitPodnet(env, exports);
  InitFdpass(env, exports);
  InitHbone(env, exports);
  return exports;
}
}  // namespace ambient

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ambient::Init(env, exports); }

NODE_API_MODULE(ambient_native, InitAddon)
