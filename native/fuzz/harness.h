// Shared by the fuzz targets: a SessionHost that records what the engine reports,
// and a loop whose epoll set exists but never runs (tunnels register their fds
// there; nothing waits on it).
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "../src/hbone/session.h"
#include "../src/hbone/tunnel.h"

namespace ambient::hbone::fuzz {

class RecordingHost : public SessionHost {
 public:
  void Emit(Event&& event) override { events.push_back(std::move(event)); }
  uint64_t NewTunnelId() override { return next_id++; }
  void TunnelAdded(Tunnel* t) override { tunnels[t->id()] = t; }
  void TunnelRemoved(Tunnel* t) override { tunnels.erase(t->id()); }
  void SessionRemoved(Session*) override { session_gone = true; }

  std::vector<Event> events;
  std::unordered_map<uint64_t, Tunnel*> tunnels;
  uint64_t next_id = 1;
  bool session_gone = false;
};

inline Loop& FuzzLoop() {
  static Loop* loop = [] {
    auto* l = new Loop(0);
    std::string error;
    if (!l->Init(&error)) __builtin_trap();
    return l;
  }();
  return *loop;
}

}  // namespace ambient::hbone::fuzz
