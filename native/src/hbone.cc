// The Node-API face of the HBONE engine (src/hbone/): a class `HboneEngine` whose
// methods post commands to the engine's I/O threads and return at once, and whose
// events reach JS in batches through one thread-safe function. Thin: arguments
// are checked for type only; native/hbone.ts validates and types them.
#include <arpa/inet.h>
#include <napi.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <vector>

#include "errors.h"
#include "hbone/engine.h"
#include "objects.h"

namespace ambient {

namespace {
using hbone::Engine;
using hbone::Event;

uint64_t ArgId(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsNumber()) ThrowInvalid(info.Env(), std::string(name) + " must be a number");
  double v = info[index].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 9007199254740991.0) ThrowInvalid(info.Env(), std::string(name) + " is out of range");
  return static_cast<uint64_t>(v);
}

socklen_t ArgAddress(const Napi::CallbackInfo& info, size_t ip_index, size_t port_index, sockaddr_storage* out) {
  std::string ip = ArgString(info, ip_index, "ip");
  int port = ArgInt(info, port_index, "port");
  if (port < 1 || port > 65535) ThrowInvalid(info.Env(), "port must be 1-65535");
  std::memset(out, 0, sizeof(*out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    return sizeof(sockaddr_in);
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    return sizeof(sockaddr_in6);
  }
  ThrowInvalid(info.Env(), "ip " + ip + " is not a numeric ip address");
}

// Events queued by the I/O threads, handed to JS in one call per wake-up.
Napi::Value EventToJs(Napi::Env env, const Event& e);

class Sink : public hbone::EventSink, public std::enable_shared_from_this<Sink> {
 public:
  void Emit(Event&& event) override {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      wake = queue_.empty();
      queue_.push_back(std::move(event));
    }
    if (!wake) return;
    auto self = shared_from_this();
    tsfn_.NonBlockingCall([self](Napi::Env env, Napi::Function callback) { self->Drain(env, callback); });
  }
  void Drain(Napi::Env env, Napi::Function callback) {
    std::vector<Event> events = Take();
    if (events.empty() || env == nullptr) return;
    Napi::HandleScope scope(env);
    Napi::Array array = Napi::Array::New(env, events.size());
    for (size_t i = 0; i < events.size(); i++) array.Set(static_cast<uint32_t>(i), EventToJs(env, events[i]));
    callback.Call({array});
  }
  std::vector<Event> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Event> out;
    out.swap(queue_);
    return out;
  }
  void Open(Napi::ThreadSafeFunction tsfn) { tsfn_ = std::move(tsfn); }
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
      queue_.clear();
    }
    tsfn_.Release();
  }

 private:
  std::mutex mu_;
  std::vector<Event> queue_;
  bool closed_ = false;
  Napi::ThreadSafeFunction tsfn_;
};

Napi::Value EventToJs(Napi::Env env, const Event& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Napi::Number::New(env, static_cast<int>(e.type)));
  o.Set("id", Napi::Number::New(env, static_cast<double>(e.id)));
  o.Set("owner", Napi::Number::New(env, static_cast<double>(e.owner)));
  o.Set("status", Napi::Number::New(env, e.status));
  o.Set("err", Napi::Number::New(env, e.err));
  o.Set("code", Napi::Number::New(env, e.code));
  o.Set("count", Napi::Number::New(env, static_cast<double>(e.count)));
  o.Set("received", Napi::Number::New(env, static_cast<double>(e.received)));
  o.Set("sent", Napi::Number::New(env, static_cast<double>(e.sent)));
  o.Set("message", Napi::String::New(env, e.message));
  Napi::Array fields = Napi::Array::New(env, e.fields.size());
  for (size_t i = 0; i < e.fields.size(); i++) fields.Set(static_cast<uint32_t>(i), Napi::String::New(env, e.fields[i]));
  o.Set("fields", fields);
  return o;
}

class HboneEngine : public Napi::ObjectWrap<HboneEngine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "HboneEngine",
                       {
                           InstanceMethod("createContext", &HboneEngine::CreateContext),
                           InstanceMethod("releaseContext", &HboneEngine::ReleaseContext),
                           InstanceMethod("listen", &HboneEngine::Listen),
                           InstanceMethod("setServerContext", &HboneEngine::SetServerContext),
                           InstanceMethod("closeServer", &HboneEngine::CloseServer),
                           InstanceMethod("openSession", &HboneEngine::OpenSession),
                           InstanceMethod("closeSession", &HboneEngine::CloseSession),
                           InstanceMethod("openStream", &HboneEngine::OpenStream),
                           InstanceMethod("deliver", &HboneEngine::Deliver),
                           InstanceMethod("reject", &HboneEngine::Reject),
                           InstanceMethod("reset", &HboneEngine::Reset),
                           InstanceMethod("counters", &HboneEngine::Counters),
                           InstanceMethod("stats", &HboneEngine::Stats),
                           InstanceMethod("close", &HboneEngine::Close),
                       });
  }

  // new HboneEngine({ threads, streamWindow, connectionWindow, maxFrameSize, maxConcurrentStreams, handshakeTimeoutMs }, onEvents)
  explicit HboneEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HboneEngine>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) ThrowInvalid(env, "options must be an object");
    if (!info[1].IsFunction()) ThrowInvalid(env, "onEvents must be a function");
    Napi::Object o = info[0].As<Napi::Object>();
    auto num = [&](const char* name, double fallback) {
      Napi::Value v = o.Get(name);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
    };
    hbone::EngineOptions options;
    options.threads = static_cast<int>(num("threads", 1));
    options.session.stream_window = static_cast<uint32_t>(num("streamWindow", options.session.stream_window));
    options.session.connection_window = static_cast<uint32_t>(num("connectionWindow", options.session.connection_window));
    options.session.max_frame_size = static_cast<uint32_t>(num("maxFrameSize", options.session.max_frame_size));
    options.session.max_concurrent_streams =
        static_cast<uint32_t>(num("maxConcurrentStreams", options.session.max_concurrent_streams));
    options.session.handshake_timeout_ms = static_cast<int>(num("handshakeTimeoutMs", options.session.handshake_timeout_ms));
    sink_ = std::make_shared<Sink>();
    // Keeps the process alive until close(): events are awaited while the engine is open.
    sink_->Open(Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "ambient:hbone", 0, 1));
    engine_ = std::make_unique<Engine>(options, sink_.get());
    std::string error;
    if (!engine_->Start(&error)) {
      sink_->Close();
      engine_.reset();
      ThrowErrno(env, EAGAIN, "pthread_create", "cannot start the hbone engine: " + error, false);
    }
  }

  ~HboneEngine() override { Shutdown(); }

 private:
  Engine& engine(Napi::Env env) {
    if (!engine_) ThrowErrno(env, EBADF, "hbone", "the hbone engine is closed", false);
    return *engine_;
  }

  void Shutdown() {
    if (engine_) engine_->Stop();
    engine_.reset();
    if (sink_) sink_->Close();
  }

  Napi::Value CreateContext(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string role = ArgString(info, 0, "role");
    if (role != "client" && role != "server") ThrowInvalid(env, "role must be 'client' or 'server'");
    std::string error;
    uint64_t id = engine(env).AddContext(role == "server" ? hbone::TlsRole::kServer : hbone::TlsRole::kClient,
                                         ArgString(info, 1, "keyPem"), ArgString(info, 2, "chainPem"),
                                         ArgString(info, 3, "trustBundlePem"), &error);
    if (id == 0) ThrowErrno(env, EINVAL, "SSL_CTX", "tls context not usable: " + error, false);
    return Napi::Number::New(env, static_cast<double>(id));
  }

  Napi::Value ReleaseContext(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine(info.Env()).ReleaseContext(ArgId(info, 0, "context")));
  }

  // The fd belongs to the engine from here on, also when this throws.
  int TakeFd(const Napi::CallbackInfo& info, size_t index) {
    int fd = ArgInt(info, index, "fd");
    if (fd < 0) ThrowInvalid(info.Env(), "fd must be a descriptor");
    return fd;
  }

  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = TakeFd(info, 0);
    std::string error;
    uint64_t id = 0;
    try {
      id = engine(env).Listen(fd, ArgId(info, 1, "context"), ArgString(info, 2, "trustDomain"), &error);
    } catch (...) {
      close(fd);
      throw;
    }
    if (id == 0) {
      close(fd);
      ThrowErrno(env, EINVAL, "hbone listen", error, false);
    }
    return Napi::Number::New(env, static_cast<double>(id));
  }

  Napi::Value SetServerContext(const Napi::CallbackInfo& info) {
    std::string error;
    if (!engine(info.Env()).SetServerContext(ArgId(info, 0, "server"), ArgId(info, 1, "context"), &error))
      ThrowErrno(info.Env(), EINVAL, "hbone setServerContext", error, false);
    return info.Env().Undefined();
  }

  Napi::Value CloseServer(const Napi::CallbackInfo& info) {
    engine(info.Env()).CloseServer(ArgId(info, 0, "server"), info[1].ToBoolean().Value());
    return info.Env().Undefined();
  }

  // openSession(fd, ip, port, context, expectedIdentity)
  Napi::Value OpenSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = TakeFd(info, 0);
    std::string error;
    uint64_t id = 0;
    try {
      sockaddr_storage addr;
      socklen_t len = ArgAddress(info, 1, 2, &addr);
      id = engine(env).OpenSession(fd, addr, len, ArgId(info, 3, "context"), ArgString(info, 4, "expectedIdentity"), &error);
    } catch (...) {
      close(fd);
      throw;
    }
    if (id == 0) {
      close(fd);
      ThrowErrno(env, EINVAL, "hbone openSession", error, false);
    }
    return Napi::Number::New(env, static_cast<double>(id));
  }

  Napi::Value CloseSession(const Napi::CallbackInfo& info) {
    engine(info.Env()).CloseSession(ArgId(info, 0, "session"), info[1].ToBoolean().Value());
    return info.Env().Undefined();
  }

  // openStream(session, fd, authority, headers: [name, value, name, value, ...])
  Napi::Value OpenStream(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = TakeFd(info, 1);
    uint64_t id;
    try {
      uint64_t session = ArgId(info, 0, "session");
      std::string authority = ArgString(info, 2, "authority");
      if (!info[3].IsArray()) ThrowInvalid(env, "headers must be an array of strings");
      Napi::Array flat = info[3].As<Napi::Array>();
      hbone::HeaderList headers;
      for (uint32_t i = 0; i + 1 < flat.Length(); i += 2)
        headers.emplace_back(flat.Get(i).ToString().Utf8Value(), flat.Get(i + 1).ToString().Utf8Value());
      id = engine(env).OpenStream(session, fd, authority, headers);
    } catch (...) {
      close(fd);
      throw;
    }
    return Napi::Number::New(env, static_cast<double>(id));
  }

  // deliver(tunnel, fd, ip, port)
  Napi::Value Deliver(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = TakeFd(info, 1);
    try {
      sockaddr_storage addr;
      socklen_t len = ArgAddress(info, 2, 3, &addr);
      engine(env).Deliver(ArgId(info, 0, "tunnel"), fd, addr, len);
    } catch (...) {
      close(fd);
      throw;
    }
    return env.Undefined();
  }

  Napi::Value Reject(const Napi::CallbackInfo& info) {
    int status = ArgInt(info, 1, "status");
    if (status < 200 || status > 599) ThrowInvalid(info.Env(), "status must be 200-599");
    engine(info.Env()).Reject(ArgId(info, 0, "tunnel"), status);
    return info.Env().Undefined();
  }

  Napi::Value Reset(const Napi::CallbackInfo& info) {
    engine(info.Env()).Reset(ArgId(info, 0, "tunnel"));
    return info.Env().Undefined();
  }

  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t received = 0, sent = 0;
    if (!engine(env).Counters(ArgId(info, 0, "tunnel"), &received, &sent)) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("received", Napi::Number::New(env, static_cast<double>(received)));
    o.Set("sent", Napi::Number::New(env, static_cast<double>(sent)));
    return o;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    hbone::EngineStats s = engine(env).Stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("sessions", Napi::Number::New(env, static_cast<double>(s.sessions)));
    o.Set("tunnels", Napi::Number::New(env, static_cast<double>(s.tunnels)));
    o.Set("sessionsTotal", Napi::Number::New(env, static_cast<double>(s.sessions_total)));
    o.Set("tunnelsTotal", Napi::Number::New(env, static_cast<double>(s.tunnels_total)));
    o.Set("bytesReceived", Napi::Number::New(env, static_cast<double>(s.bytes_received)));
    o.Set("bytesSent", Napi::Number::New(env, static_cast<double>(s.bytes_sent)));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  std::shared_ptr<Sink> sink_;
  std::unique_ptr<Engine> engine_;
};
}  // namespace

void InitHbone(Napi::Env env, Napi::Object exports) { exports.Set("HboneEngine", HboneEngine::Define(env)); }

}  // namespace ambient
