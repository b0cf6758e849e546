// The event loop every Ferry daemon runs: one thread that waits, with io_uring, on any number
// of file descriptors (the fabric's completion fd, unix sockets, signalfd, and later every
// userfaultfd of the pager), runs timers, and runs tasks posted from other threads.
//
// Progress sources (the fabric) are polled on every turn and asked before the loop blocks
// whether blocking is safe (libfabric's fi_trywait contract). After any work the loop keeps
// polling for `spin` before it blocks, which keeps request/reply latency near the fabric's own.
//
// Thread-safety: post() and stop() may be called from any thread; everything else only from
// the loop's thread (or before run()). Callbacks run on the loop's thread, one at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "dipc/status.h"

struct io_uring;

namespace ferry::dipc {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using FdCallback = std::function<void(uint32_t revents)>;
  using TimerId = uint64_t;

  // A progress source: poll() does pending work and returns how many events it handled;
  // sleep_limit() says how long the loop may sleep without missing its events: zero (keep
  // polling), a bound, or kForever. While the loop sleeps, `wait_fd` (if >= 0) becoming
  // readable wakes it. The loop polls wait_fd only while it sleeps: such an fd may stay
  // readable until sleep_limit() resets it (libfabric's fi_trywait does).
  struct ProgressSource {
    std::function<int()> poll;
    std::function<std::chrono::milliseconds()> sleep_limit;
    int wait_fd = -1;
  };
  static constexpr std::chrono::milliseconds kForever = std::chrono::milliseconds::max();

  static Result<std::unique_ptr<EventLoop>> create(std::chrono::microseconds spin = std::chrono::microseconds(50));
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `cb` each time `fd` is readable (POLLIN) or has an error/hang-up, until unwatch(fd).
  // The caller keeps ownership of fd and must unwatch before closing it.
  Status watch(int fd, FdCallback cb);
  void unwatch(int fd);

  TimerId after(std::chrono::milliseconds delay, std::function<void()> cb);
  TimerId every(std::chrono::milliseconds period, std::function<void()> cb);
  void cancel(TimerId id);

  // Returns an id for remove_progress(); a source must be removed before its wait fd closes.
  size_t add_progress(ProgressSource source);
  void remove_progress(size_t id);

  // Thread-safe: runs `task` on the loop's thread soon.
  void post(std::function<void()> task);

  // Runs until stop(). Returns when stopped.
  void run();
  // Thread-safe; also callable from a callback.
  void stop();
  bool on_loop_thread() const;

 private:
  struct Timer {
    std::function<void()> cb;
    std::chrono::milliseconds period{0};
  };
  EventLoop() = default;
  void arm(int fd, uint64_t tag = 0);
  int run_timers();
  int run_posted();
  int reap(std::chrono::milliseconds max_wait);
  Clock::time_point next_deadline() const;

  std::unique_ptr<io_uring> ring_;
  int wake_fd_ = -1;
  std::chrono::microseconds spin_{0};
  std::unordered_map<int, FdCallback> watches_;
  std::multimap<Clock::time_point, TimerId> deadlines_;
  std::unordered_map<TimerId, std::pair<Clock::time_point, Timer>> timers_;
  TimerId next_timer_ = 1;
  std::vector<ProgressSource> progress_;
  std::vector<bool> progress_armed_;  // a poll on the source's wait_fd is outstanding
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> thread_id_{0};
};

}  // namespace ferry::dipc
