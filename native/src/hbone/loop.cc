#include "loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ambient::hbone {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Loop::Loop(int index) : index_(index) {}

Loop::~Loop() {
  if (epfd_ >= 0) close(epfd_);
  if (wakefd_ >= 0) close(wakefd_);
}

bool Loop::Start(std::string* error) {
  if (epfd_ < 0 && !Init(error)) return false;
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::exception& e) {
    *error = std::string("cannot start an hbone i/o thread: ") + e.what();
    return false;
  }
  return true;
}

void Loop::CollectGarbage() {
  std::vector<Pollable*> dead;
  dead.swap(graveyard_);
  for (Pollable* p : dead) delete p;
}

bool Loop::Init(std::string* error) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    *error = std::string("epoll_create1 failed: ") + strerror(errno);
    return false;
  }
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd_ < 0) {
    *error = std::string("eventfd failed: ") + strerror(errno);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) {
    *error = std::string("epoll_ctl(eventfd) failed: ") + strerror(errno);
    return false;
  }
  return true;
}

void Loop::Stop(std::function<void()> final_work) {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    final_work_ = std::move(final_work);
  }
  stopping_.store(true);
  uint64_t one = 1;
  (void)!write(wakefd_, &one, sizeof(one));
  thread_.join();
}

void Loop::Post(std::function<void()> fn) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake = commands_.empty();
    commands_.push_back(std::move(fn));
  }
  if (wake) {
    uint64_t one = 1;
    (void)!write(wakefd_, &one, sizeof(one));
  }
}

int Loop::Add(int fd, Pollable* p) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = p;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : errno;
}

void Loop::Remove(int fd) {
  epoll_event ev{};
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
}

void Loop::Retire(Pollable* p) {
  ticking_.erase(p);
  graveyard_.push_back(p);
}

void Loop::RunCommands() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(commands_);
  }
  for (auto& fn : batch) fn();
}

void Loop::Run() {
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(epfd_, events, 256, 250);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; i++) {
      auto* p = static_cast<Pollable*>(events[i].data.ptr);
      if (p == nullptr) {
        uint64_t v;
        (void)!read(wakefd_, &v, sizeof(v));
        RunCommands();
      } else {
        p->OnPoll(events[i].events);
      }
    }
    int64_t now = NowMs();
    if (now - last_tick_ >= 250) {
      last_tick_ = now;
      std::vector<Pollable*> due(ticking_.begin(), ticking_.end());
      for (Pollable* p : due)
        if (ticking_.count(p)) p->OnTick(now);
    }
    CollectGarbage();
    if (stopping_.load()) {
      RunCommands();
      std::function<void()> work;
      {
        std::lock_guard<std::mutex> lock(mu_);
        work.swap(final_work_);
      }
      if (work) work();
      CollectGarbage();
      break;
    }
  }
}

}  // namespace ambient::hbone
