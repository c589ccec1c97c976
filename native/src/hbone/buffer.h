// A growable byte queue: append at the end, consume from the front, compacted in
// place. Idle queues give their memory back (Release), so an idle tunnel holds none.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace ambient::hbone {

class ByteQueue {
 public:
  ByteQueue() = default;
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;
  ~ByteQueue() { std::free(buf_); }

  size_t size() const { return end_ - begin_; }
  bool empty() const { return end_ == begin_; }
  const uint8_t* data() const { return buf_ + begin_; }

  void Consume(size_t n) {
    begin_ += n;
    if (begin_ >= end_) begin_ = end_ = 0;
  }

  void Append(const uint8_t* p, size_t n) {
    if (n == 0) return;
    std::memcpy(Space(n), p, n);
    end_ += n;
  }

  /** At least `n` writable bytes at the end; Commit what was written. */
  uint8_t* Space(size_t n) {
    if (cap_ - end_ >= n) return buf_ + end_;
    if (begin_ > 0) {
      std::memmove(buf_, buf_ + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
      if (cap_ - end_ >= n) return buf_ + end_;
    }
    size_t want = cap_ ? cap_ : 16384;
    while (want - end_ < n) want *= 2;
    auto* grown = static_cast<uint8_t*>(std::realloc(buf_, want));
    if (grown == nullptr) throw std::bad_alloc();
    buf_ = grown;
    cap_ = want;
    return buf_ + end_;
  }
  size_t SpaceLeft() const { return cap_ - end_; }
  void Commit(size_t n) { end_ += n; }

  /** Frees the memory of an empty queue. */
  void Release() {
    if (!empty()) return;
    std::free(buf_);
    buf_ = nullptr;
    cap_ = begin_ = end_ = 0;
  }

 private:
  uint8_t* buf_ = nullptr;
  size_t cap_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace ambient::hbone
