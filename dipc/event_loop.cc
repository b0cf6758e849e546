#include "dipc/event_loop.h"

#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace ferry::dipc {
namespace {

// Polls are one-shot and re-armed after each callback: level-triggered, so a callback that
// leaves data behind is called again, and nothing is missed between a wake-up and a re-arm.
constexpr uint64_t kRemoveTag = uint64_t(1) << 63;
constexpr uint64_t kProgressTag = uint64_t(1) << 62;  // low bits: index of the progress source

uint64_t this_thread_tag() {
  return std::hash<std::thread::id>{}(std::this_thread::get_id()) | 1;
}

}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::create(std::chrono::microseconds spin) {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->spin_ = spin;
  loop->ring_ = std::make_unique<io_uring>();
  int rc = io_uring_queue_init(256, loop->ring_.get(), 0);
  if (rc < 0) {
    loop->ring_.reset();
    return make_error(ErrorCode::kUnavailable, errno_message("io_uring_queue_init", -rc));
  }
  loop->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (loop->wake_fd_ < 0) return make_error(ErrorCode::kUnavailable, errno_message("eventfd", errno));
  int wake = loop->wake_fd_;
  Status s = loop->watch(wake, [wake](uint32_t) {
    uint64_t v;
    while (::read(wake, &v, sizeof v) > 0) {
    }
  });
  if (!s) return s.error();
  return loop;
}

EventLoop::~EventLoop() {
  if (ring_) io_uring_queue_exit(ring_.get());
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void EventLoop::arm(int fd, uint64_t tag) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (!sqe) {
    io_uring_submit(ring_.get());
    sqe = io_uring_get_sqe(ring_.get());
  }
  io_uring_prep_poll_add(sqe, fd, POLLIN);
  io_uring_sqe_set_data64(sqe, tag ? tag : uint64_t(uint32_t(fd)));
}

Status EventLoop::watch(int fd, FdCallback cb) {
  if (fd < 0) return make_error(ErrorCode::kInvalid, "watch: negative fd");
  bool had = watches_.count(fd) != 0;
  watches_[fd] = std::move(cb);
  if (!had) arm(fd);
  return Status::Ok();
}

void EventLoop::unwatch(int fd) {
  if (watches_.erase(fd) == 0) return;
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (!sqe) {
    io_uring_submit(ring_.get());
    sqe = io_uring_get_sqe(ring_.get());
  }
  io_uring_prep_poll_remove(sqe, uint64_t(uint32_t(fd)));
  io_uring_sqe_set_data64(sqe, kRemoveTag);
  io_uring_submit(ring_.get());
}

EventLoop::TimerId EventLoop::after(std::chrono::milliseconds delay, std::function<void()> cb) {
  TimerId id = next_timer_++;
  auto when = Clock::now() + delay;
  timers_.emplace(id, std::make_pair(when, Timer{std::move(cb), std::chrono::milliseconds(0)}));
  deadlines_.emplace(when, id);
  return id;
}

EventLoop::TimerId EventLoop::every(std::chrono::milliseconds period, std::function<void()> cb) {
  TimerId id = after(period, std::move(cb));
  timers_.at(id).second.period = period;
  return id;
}

void EventLoop::cancel(TimerId id) { timers_.erase(id); }  // its deadline entry is skipped later

size_t EventLoop::add_progress(ProgressSource source) {
  progress_.push_back(std::move(source));
  progress_armed_.push_back(false);
  return progress_.size() - 1;
}

void EventLoop::remove_progress(size_t id) {
  if (id >= progress_.size() || !progress_[id].poll) return;
  progress_[id] = ProgressSource{};  // indexes stay stable; an empty source is skipped
  if (!progress_armed_[id]) return;
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (!sqe) {
    io_uring_submit(ring_.get());
    sqe = io_uring_get_sqe(ring_.get());
  }
  io_uring_prep_poll_remove(sqe, kProgressTag | id);
  io_uring_sqe_set_data64(sqe, kRemoveTag);
  io_uring_submit(ring_.get());
}

void EventLoop::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(task));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void EventLoop::stop() {
  stop_.store(true);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

bool EventLoop::on_loop_thread() const { return thread_id_.load() == this_thread_tag(); }

int EventLoop::run_posted() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
  return int(tasks.size());
}

int EventLoop::run_timers() {
  int ran = 0;
  auto now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto [when, id] = *deadlines_.begin();
    deadlines_.erase(deadlines_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end() || it->second.first != when) continue;  // cancelled or rescheduled
    auto cb = it->second.second.cb;  // copy: the callback may cancel its own timer
    if (it->second.second.period.count() > 0) {
      auto next = now + it->second.second.period;
      it->second.first = next;
      deadlines_.emplace(next, id);
    } else {
      timers_.erase(it);
    }
    cb();
    ++ran;
  }
  return ran;
}

EventLoop::Clock::time_point EventLoop::next_deadline() const {
  auto limit = Clock::now() + std::chrono::seconds(1);
  if (deadlines_.empty()) return limit;
  return std::min(limit, deadlines_.begin()->first);
}

int EventLoop::reap(std::chrono::milliseconds max_wait) {
  io_uring_submit(ring_.get());
  io_uring_cqe* cqe = nullptr;
  if (max_wait.count() > 0) {
    Clock::duration wait = next_deadline() - Clock::now();
    if (max_wait != kForever) wait = std::min<Clock::duration>(wait, max_wait);
    if (wait.count() > 0) {
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
      __kernel_timespec ts{ns / 1000000000, ns % 1000000000};
      io_uring_wait_cqe_timeout(ring_.get(), &cqe, &ts);
    }
  }
  int handled = 0;
  std::vector<std::pair<int, uint32_t>> ready;
  unsigned head;
  unsigned count = 0;
  io_uring_for_each_cqe(ring_.get(), head, cqe) {
    ++count;
    uint64_t data = io_uring_cqe_get_data64(cqe);
    if (data & kRemoveTag) continue;
    if (data & kProgressTag) {  // a sleeping loop woken by a progress source: not work by itself
      size_t index = size_t(data & ~kProgressTag);
      if (index < progress_armed_.size()) progress_armed_[index] = false;
      continue;
    }
    int fd = int(uint32_t(data));
    uint32_t revents = cqe->res < 0 ? uint32_t(POLLERR) : uint32_t(cqe->res);
    if (cqe->res == -ECANCELED) continue;  // removed by unwatch
    ready.emplace_back(fd, revents);
  }
  io_uring_cq_advance(ring_.get(), count);
  for (auto [fd, revents] : ready) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) continue;
    auto cb = it->second;  // copy: the callback may unwatch itself
    cb(revents);
    ++handled;
    if (watches_.count(fd)) arm(fd);
  }
  return handled;
}

void EventLoop::run() {
  thread_id_.store(this_thread_tag());
  auto last_work = Clock::now();
  while (!stop_.load(std::memory_order_relaxed)) {
    int work = reap(std::chrono::milliseconds(0));
    work += run_posted();
    work += run_timers();
    for (auto& p : progress_)
      if (p.poll) work += p.poll();
    auto now = Clock::now();
    if (work > 0) {
      last_work = now;
      continue;
    }
    if (now - last_work < spin_) {
      // Spinning, but cooperatively: on a node with few CPUs a spinning daemon must not keep
      // a runnable one (an agent in a migration's freeze, the job itself) off the CPU.
      sched_yield();
      continue;
    }
    auto limit = kForever;
    for (auto& p : progress_)
      if (p.sleep_limit) limit = std::min(limit, p.sleep_limit());
    if (limit.count() <= 0) continue;
    for (size_t i = 0; i < progress_.size(); ++i) {
      if (progress_[i].wait_fd < 0 || progress_armed_[i]) continue;
      arm(progress_[i].wait_fd, kProgressTag | i);
      progress_armed_[i] = true;
    }
    reap(limit);
    last_work = Clock::now() - spin_;  // a wake-up alone is not work: poll once more, then block
  }
  thread_id_.store(0);
}

}  // namespace ferry::dipc
