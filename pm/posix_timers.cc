#include "pm/posix_timers.h"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <sstream>
#include <string>

#include "pm/proc_info.h"
#include "pm/restore_builder.h"
#include "pm/tracee.h"

// Not in every libc's headers (Linux 6.15, linux/prctl.h): timer_create takes the id it is to
// give from the timer_t its caller points at.
#ifndef PR_TIMER_CREATE_RESTORE_IDS
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#define PR_TIMER_CREATE_RESTORE_IDS_ON 1
#endif

namespace ferry::pm {
namespace {

constexpr int kSigevThreadId = 4;  // SIGEV_THREAD_ID

// One entry of /proc/PID/timers.
struct ProcTimer {
  int id = -1;
  int signal = 0;
  uint64_t value = 0;
  int notify = SIGEV_SIGNAL;  // with kSigevThreadId when aimed at a thread
  pid_t target = 0;           // the pid or tid the kernel shows, in the reader's namespace
  int clock = 0;
};

// "ID: 0\nsignal: 34/0000000000000abc\nnotify: signal/tid.1234\nClockID: 1\n", per timer.
std::vector<ProcTimer> parse_timers(const std::string& text) {
  std::vector<ProcTimer> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("ID: ", 0) == 0) {
      out.emplace_back();
      out.back().id = std::atoi(line.c_str() + 4);
    } else if (out.empty()) {
      continue;
    } else if (line.rfind("signal: ", 0) == 0) {
      out.back().signal = std::atoi(line.c_str() + 8);
      if (auto slash = line.find('/'); slash != std::string::npos)
        out.back().value = std::strtoull(line.c_str() + slash + 1, nullptr, 16);
    } else if (line.rfind("notify: ", 0) == 0) {
      std::string how = line.substr(8);
      out.back().notify = how.rfind("none", 0) == 0     ? SIGEV_NONE
                          : how.rfind("thread", 0) == 0 ? SIGEV_THREAD
                                                        : SIGEV_SIGNAL;
      if (how.find("/tid.") != std::string::npos) out.back().notify |= kSigevThreadId;
      if (auto dot = how.find('.'); dot != std::string::npos)
        out.back().target = std::atoi(how.c_str() + dot + 1);
    } else if (line.rfind("ClockID: ", 0) == 0) {
      out.back().clock = std::atoi(line.c_str() + 9);
    }
  }
  return out;
}

std::string timer_name(int id) { return "POSIX timer " + std::to_string(id); }

uint64_t ns(const timespec& t) { return uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec); }
timespec from_ns(uint64_t v) { return {time_t(v / 1000000000ull), long(v % 1000000000ull)}; }

// Whether a signal of timer `id` waits in `infos` (siginfo_t each).
bool has_timer_signal(capnp::List<capnp::Data>::Reader infos, int id) {
  for (auto info : infos) {
    siginfo_t si{};
    std::memcpy(&si, info.begin(), std::min(sizeof si, size_t(info.size())));
    if (si.si_code == SI_TIMER && si.si_timerid == id) return true;
  }
  return false;
}

}  // namespace

Status check_posix_timers(pid_t pid, int threads) {
  for (const auto& t : parse_timers(read_text("/proc/" + std::to_string(pid) + "/timers"))) {
    if (t.clock < 0)
      return make_error(ErrorCode::kRefused,
                        timer_name(t.id) +
                            " counts another process's or thread's CPU time (clock " +
                            std::to_string(t.clock) + "): it cannot move");
    if (t.clock == CLOCK_THREAD_CPUTIME_ID && threads > 1)
      return make_error(
          ErrorCode::kRefused,
          timer_name(t.id) +
              " counts a thread's CPU time in a process of several threads: it cannot move");
  }
  return Status::Ok();
}

Status capture_posix_timers(Tracee& leader, uint64_t scratch, wire::ProcessImage::Builder image) {
  auto timers = parse_timers(read_text("/proc/" + std::to_string(leader.pid()) + "/timers"));
  auto threads = image.asReader().getThreads();
  auto list = image.initPosixTimers(uint32_t(timers.size()));
  for (uint32_t i = 0; i < timers.size(); ++i) {
    const ProcTimer& t = timers[i];
    auto out = list[i];
    out.setId(t.id);
    out.setClock(t.clock);
    out.setNotify(t.notify);
    out.setSignal(t.signal);
    out.setValue(t.value);
    bool waits = has_timer_signal(image.asReader().getSignals().getPendingShared(), t.id) ||
                 has_timer_signal(image.asReader().getSignals().getPending(), t.id);
    if (t.notify & kSigevThreadId) {
      bool found = false;
      for (uint32_t k = 0; k < threads.size(); ++k)
        if (pid_t(threads[k].getTid()) == t.target) {
          out.setThread(k);
          found = true;
          waits = waits || has_timer_signal(threads[k].getPending(), t.id);
        }
      if (!found)
        return make_error(ErrorCode::kRefused,
                          timer_name(t.id) + " signals thread " + std::to_string(t.target) +
                              ", which is not one of the process's: it cannot move");
    }
    auto rc = leader.syscall(SYS_timer_gettime, uint64_t(t.id), scratch);
    if (!rc) return rc.error();
    if (rc.value() != 0)
      return make_error(ErrorCode::kUnavailable, "timer_gettime of " + timer_name(t.id) + ": " +
                                                     std::strerror(int(-rc.value())));
    itimerspec spec{};
    if (Status s = leader.read_memory(scratch, std::as_writable_bytes(std::span(&spec, 1))); !s)
      return s;
    auto overrun = leader.syscall(SYS_timer_getoverrun, uint64_t(t.id));
    if (!overrun) return overrun.error();
    // A periodic timer whose signal waits undelivered is re-armed by the kernel when the signal
    // is taken, which the copy queued on the destination will not do; as setitimer's timers
    // (capture.cc), its next expiration is a period away. (This kernel's timer_gettime shows
    // the time to the next period there, never 0.)
    uint64_t remaining = ns(spec.it_value), interval = ns(spec.it_interval);
    if (interval > 0 && waits) remaining = interval;
    out.setRemainingNs(remaining);
    out.setIntervalNs(interval);
    out.setOverrun(overrun.value() > 0 ? int32_t(overrun.value()) : 0);
  }
  return Status::Ok();
}

Status restore_posix_timers(Builder& b, wire::ProcessImage::Reader image,
                            const std::vector<pid_t>& tids) {
  auto timers = image.getPosixTimers();
  if (timers.size() == 0) return Status::Ok();
  if (auto r = b.call(
          "prctl(PR_TIMER_CREATE_RESTORE_IDS): POSIX timers cannot keep their ids on this kernel",
          SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0);
      !r)
    return r.error();
  Status st = Status::Ok();
  for (auto t : timers) {
    const std::string what = timer_name(t.getId());
    struct {
      uint64_t value;
      int32_t signo;
      int32_t notify;
      int32_t tid;
      int32_t pad[11];
      int32_t id;  // in: the id wanted; out: the id given
    } args{};
    static_assert(offsetof(decltype(args), id) == sizeof(sigevent));
    args.value = t.getValue();
    args.signo = t.getSignal();
    args.notify = t.getNotify();
    if (t.getNotify() & kSigevThreadId) {
      if (t.getThread() >= tids.size()) {
        st = make_error(ErrorCode::kInvalid,
                        "restore: " + what + " signals a thread the image lacks");
        break;
      }
      args.tid = tids[t.getThread()];
    }
    args.id = t.getId();
    auto p = b.put(&args, sizeof args);
    if (!p) return p.error();
    auto r = b.call("create " + what, SYS_timer_create, uint64_t(t.getClock()), p.value(),
                    p.value() + offsetof(decltype(args), id));
    if (!r) {
      st = r.error();
      break;
    }
    if (t.getRemainingNs() == 0) continue;
    itimerspec spec{from_ns(t.getIntervalNs()), from_ns(t.getRemainingNs())};
    auto s = b.put(&spec, sizeof spec);
    if (!s) return s.error();
    if (auto armed = b.call("arm " + what, SYS_timer_settime, uint64_t(t.getId()), 0, s.value(), 0);
        !armed) {
      st = armed.error();
      break;
    }
  }
  (void)b.call("prctl(PR_TIMER_CREATE_RESTORE_IDS, off)", SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS,
               PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0);
  return st;
}

}  // namespace ferry::pm
