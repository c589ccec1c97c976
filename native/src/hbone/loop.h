// One native I/O thread: an epoll set, a command queue the JS thread posts to
// (woken by an eventfd), a coarse tick for deadlines, and deferred deletion so an
// object closed while its events are being dispatched is freed after the batch.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace ambient::hbone {

class Pollable {
 public:
  virtual ~Pollable() = default;
  /** epoll events (EPOLLIN, EPOLLOUT, ...) for this object's fd. */
  virtual void OnPoll(uint32_t events) = 0;
  /** Called about every 250 ms while registered with Loop::Watch; `now_ms` is monotonic. */
  virtual void OnTick(int64_t now_ms) {}
};

int64_t NowMs();

class Loop {
 public:
  explicit Loop(int index);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  int index() const { return index_; }
  /** Creates the epoll set and the wake-up eventfd (Start does it too). */
  bool Init(std::string* error);
  /** Creates the epoll set and starts the thread; false with `error` set on failure. */
  bool Start(std::string* error);
  /** Deletes what was retired (the thread does this after every batch; fuzzers call it). */
  void CollectGarbage();
  /** Runs the queued commands, then `final_work` on the thread, then joins it. */
  void Stop(std::function<void()> final_work);

  /** Thread-safe: runs `fn` on the loop thread. */
  void Post(std::function<void()> fn);

  // Loop thread only.
  /** Edge-triggered registration for in, out, peer half-close. Returns 0 or errno. */
  int Add(int fd, Pollable* p);
  void Remove(int fd);
  /** Ticks `p` until Unwatch (deadline checks). */
  void Watch(Pollable* p) { ticking_.insert(p); }
  void Unwatch(Pollable* p) { ticking_.erase(p); }
  /** Deletes `p` after the current batch of events. */
  void Retire(Pollable* p);
  bool OnLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Run();
  void RunCommands();

  const int index_;
  int epfd_ = -1;
  int wakefd_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::function<void()>> commands_;
  std::atomic<bool> stopping_{false};
  std::function<void()> final_work_;
  std::unordered_set<Pollable*> ticking_;
  std::vector<Pollable*> graveyard_;
  int64_t last_tick_ = 0;
};

}  // namespace ambient::hbone
