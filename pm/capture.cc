// Freeze and capture (steps 1 and 2). The order matters: everything that can refuse is checked
// first, so that a refused process is left exactly as it was.
#include "pm/capture.h"
#include "pm/pagemap.h"

#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <memory>
#include <optional>
#include <sstream>

#include "pm/capture_checks.h"
#include "pm/injected_code.h"
#include "pm/carried_files.h"
#include "pm/job_namespace.h"
#include "pm/fifos.h"
#include "pm/kernel_objects.h"
#include "pm/posix_timers.h"
#include "pm/unix_sockets.h"
#include "pm/proc_info.h"
#include "pm/restore.h"
#include "pm/restore_builder.h"

namespace ferry::pm {
namespace {

capnp::Data::Reader as_data(const void* p, size_t n) {
  return capnp::Data::Reader(static_cast<const capnp::byte*>(p), n);
}

std::string proc(pid_t pid, const std::string& what) { return "/proc/" + std::to_string(pid) + "/" + what; }

wire::Vma::Kind vma_kind(const Vma& v) {
  if (v.path == "[heap]") return wire::Vma::Kind::HEAP;
  if (v.path == "[stack]") return wire::Vma::Kind::STACK;
  if (v.path == "[vdso]") return wire::Vma::Kind::VDSO;
  if (v.path == "[vvar]") return wire::Vma::Kind::VVAR;
  if (v.path == "[vvar_vclock]") return wire::Vma::Kind::VVAR_VCLOCK;
  if (v.path == "[vsyscall]") return wire::Vma::Kind::VSYSCALL;
  if (v.is_file() && v.path.rfind("/dev/", 0) != 0) return wire::Vma::Kind::FILE;
  return wire::Vma::Kind::ANONYMOUS;  // also private mappings of /dev/zero and named anonymous memory
}

// Marks the pages of `v` that carry content of their own (pm/pagemap.h): in anonymous memory
// every touched page; in file mappings only the pages written (COW copies).
// Shared memory: every page whose shmem page holds data, mapped here or not.
Status fill_present(pid_t pid, int pagemap_fd, const Vma& v, wire::Vma::Builder out, size_t page) {
  size_t pages = v.size() / page;
  auto bits = out.initPresent(uint32_t((pages + 7) / 8));
  bool shared_memory = out.getKind() == wire::Vma::Kind::SHARED_MEMORY;
  auto ranges = pagemap::pages_with_content(pagemap_fd, v.start, v.end, vma_kind(v) != wire::Vma::Kind::FILE || shared_memory);
  if (!ranges) return ranges.error();
  for (const auto& r : ranges.value()) pagemap::set_bits(bits.begin(), (r.start - v.start) / page, (r.end - r.start) / page);
  if (shared_memory) {
    auto data = pagemap::shmem_with_data(pid, v.start, v.end, v.offset, v.start, v.end);
    if (!data) return data.error();
    for (const auto& r : data.value()) pagemap::set_bits(bits.begin(), (r.start - v.start) / page, (r.end - r.start) / page);
  }
  uint64_t count = 0;
  for (auto b : bits) count += uint64_t(__builtin_popcount(b));
  out.setPresentPages(count);
  return Status::Ok();
}

// One system call's worth of scratch memory in the tracee: the bytes are saved first and put
// back on destruction, so the frozen process never sees them change.
class Scratch {
 public:
  Scratch(Tracee& t, uint64_t address, size_t size) : t_(t), address_(address), saved_(size) {
    ok_ = t_.read_memory(address_, saved_).ok();
  }
  ~Scratch() {
    if (ok_) (void)t_.write_memory(address_, saved_);
  }
  bool ok() const { return ok_; }
  uint64_t address() const { return address_; }

 private:
  Tracee& t_;
  uint64_t address_;
  std::vector<std::byte> saved_;
  bool ok_ = false;
};

struct KernelSigaction {
  uint64_t handler, flags, restorer, mask;
};

using SigInfos = std::vector<std::vector<std::byte>>;  // raw siginfo_t each (Tracee::pending_siginfo)

int signal_number(const std::vector<std::byte>& info) {
  siginfo_t si{};
  std::memcpy(&si, info.data(), std::min(sizeof si, info.size()));
  return si.si_signo;
}

void store_siginfos(capnp::List<capnp::Data>::Builder list, const SigInfos& infos) {
  for (uint32_t i = 0; i < infos.size(); ++i) list.set(i, as_data(infos[i].data(), infos[i].size()));
}

// The process-wide pending signals, as they are now.
Status capture_pending_shared(Tracee& t, wire::SignalState::Builder out) {
  auto infos = t.pending_siginfo(true);
  if (!infos) return infos.error();
  store_siginfos(out.initPendingShared(uint32_t(infos.value().size())), infos.value());
  return Status::Ok();
}

// The leader's mask and the pending signals, before any call is injected (pm/tracee.h). The
// process-wide ones are read again with the interval timers.
Status capture_signal_state(Tracee& t, wire::SignalState::Builder out) {
  auto blocked = t.blocked_signals();
  if (!blocked) return blocked.error();
  out.setBlocked(blocked.value());
  auto infos = t.pending_siginfo(false);
  if (!infos) return infos.error();
  store_siginfos(out.initPending(uint32_t(infos.value().size())), infos.value());
  return capture_pending_shared(t, out);
}

// Signal handlers, read by the process itself (rt_sigaction): in one batch into `area` (two
// pages: the results, then the table) with a code page, else one call at a time into a word of
// its stack page at `stack_scratch`, saved and put back.
Status capture_handlers(Tracee& t, const StatusInfo& status, uint64_t area, uint64_t stack_scratch,
                        wire::SignalState::Builder out) {
  uint64_t non_default = status.sig_caught | status.sig_ignored;
  std::vector<int> sigs;
  for (int sig = 1; sig <= 64; ++sig)
    if (((non_default >> (sig - 1)) & 1) && sig != SIGKILL && sig != SIGSTOP) sigs.push_back(sig);
  std::vector<KernelSigaction> actions(sigs.size());
  if (t.code_page() && !sigs.empty()) {
    std::vector<Tracee::Call> calls(sigs.size());
    for (size_t i = 0; i < sigs.size(); ++i) {
      calls[i].number = SYS_rt_sigaction;
      calls[i].args[0] = uint64_t(sigs[i]);
      calls[i].args[2] = area + i * sizeof(KernelSigaction);
      calls[i].args[3] = 8;
    }
    auto r = t.run_batch(area + 64 * sizeof(KernelSigaction), calls);
    if (!r) return r.error();
    if (r.value().size() != sigs.size()) return make_error(ErrorCode::kUnavailable, "rt_sigaction(" + std::to_string(sigs[r.value().size() - 1]) + ") failed in the process");
    if (Status s = t.read_memory(area, std::as_writable_bytes(std::span(actions))); !s) return s;
  } else if (!sigs.empty()) {
    Scratch scratch(t, stack_scratch, sizeof(KernelSigaction));
    if (!scratch.ok()) return make_error(ErrorCode::kUnavailable, "no scratch memory to read signal handlers");
    for (size_t i = 0; i < sigs.size(); ++i) {
      auto rc = t.syscall(SYS_rt_sigaction, uint64_t(sigs[i]), 0, scratch.address(), 8);
      if (!rc) return rc.error();
      if (rc.value() != 0) return make_error(ErrorCode::kUnavailable, "rt_sigaction(" + std::to_string(sigs[i]) + ") failed in the process");
      if (Status s = t.read_memory(scratch.address(), std::as_writable_bytes(std::span(&actions[i], 1))); !s) return s;
    }
  }
  auto list = out.initHandlers(uint32_t(actions.size()));
  for (uint32_t i = 0; i < actions.size(); ++i) {
    list[i].setSignal(uint32_t(sigs[i]));
    list[i].setHandler(actions[i].handler);
    list[i].setFlags(actions[i].flags);
    list[i].setRestorer(actions[i].restorer);
    list[i].setMask(actions[i].mask);
  }
  return Status::Ok();
}

// The capture's code page (pm/tracee.h): mapped in the process for the capture, with two pages
// for the leader's batches and one for each thread's (the leader's too) after the code, and unmapped when
// it ends, from the process's own syscall instruction. Not mapped (address 0: calls one at a
// time) when a SIGCONT is pending, which the code's self-sent SIGSTOPs would discard, or when
// the process cannot map it.
class CaptureCodePage {
 public:
  CaptureCodePage(Tracee& leader, std::vector<Tracee*> threads, size_t page, bool sigcont_pending)
      : leader_(leader), threads_(std::move(threads)), bytes_((4 + threads_.size()) * page), page_(page) {
    if (sigcont_pending) return;
    auto m = leader_.syscall(SYS_mmap, 0, bytes_, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, uint64_t(-1), 0);
    if (!m || (m.value() < 0 && m.value() > -4096)) return;
    address_ = uint64_t(m.value());
    if (!leader_.write_memory(address_, injected_code()).ok()) return;
    leader_.set_code_page(address_);
    for (Tracee* t : threads_) t->set_code_page(address_);
  }
  ~CaptureCodePage() {
    if (!address_) return;
    leader_.set_code_page(0);
    for (Tracee* t : threads_) t->set_code_page(0);
    (void)leader_.syscall(SYS_munmap, address_, bytes_);
  }
  bool mapped() const { return leader_.code_page() != 0; }
  uint64_t leader_area() const { return address_ + page_; }         // two pages
  uint64_t extras_pages() const { return address_ + 3 * page_; }    // the leader's, then each thread's
 private:
  Tracee& leader_;
  std::vector<Tracee*> threads_;
  size_t bytes_, page_;
  uint64_t address_ = 0;
};

// The signal an interval timer sends.
int timer_signal(int which) { return which == ITIMER_REAL ? SIGALRM : which == ITIMER_VIRTUAL ? SIGVTALRM : SIGPROF; }


// How a thread is scheduled, read from outside. Read before SameCpu pins anything.
struct Scheduling {
  int policy = SCHED_OTHER, priority = 0, nice = 0;
  cpu_set_t affinity{};
  bool has_affinity = false;
};

Scheduling read_scheduling(pid_t tid) {
  Scheduling s;
  int policy = ::sched_getscheduler(tid);
  if (policy >= 0) s.policy = policy;
  sched_param p{};
  if (::sched_getparam(tid, &p) == 0) s.priority = p.sched_priority;
  errno = 0;
  int nice = ::getpriority(PRIO_PROCESS, id_t(tid));
  if (errno == 0) s.nice = nice;
  s.has_affinity = ::sched_getaffinity(tid, sizeof s.affinity, &s.affinity) == 0;
  return s;
}

// What a thread has of its own that ptrace and /proc tell (its tid in the job and its name come
// with its extras). The leader's registers, extended
// state, mask, pending signals and rseq are in the image's top-level fields; every other
// thread's go here. `sigcont`: set if a SIGCONT waits on it.
Status capture_thread_state(Tracee& t, bool leader, const Scheduling& sched, wire::Thread::Builder out, bool* sigcont) {
  pid_t tid = t.pid();
  out.setTid(uint32_t(tid));
  if (!leader) {
    auto regs = t.regs();
    if (!regs) return regs.error();
    out.setRegs(as_data(&regs.value(), sizeof regs.value()));
    auto xstate = t.xstate();
    if (!xstate) return xstate.error();
    out.setXstate(as_data(xstate.value().data(), xstate.value().size()));
    auto blocked = t.blocked_signals();
    if (!blocked) return blocked.error();
    out.setBlocked(blocked.value());
    auto pending = t.pending_siginfo(false);
    if (!pending) return pending.error();
    store_siginfos(out.initPending(uint32_t(pending.value().size())), pending.value());
    for (const auto& info : pending.value())
      if (signal_number(info) == SIGCONT) *sigcont = true;
    auto rseq = t.rseq();
    if (!rseq) return rseq.error();
    auto r = out.initRseq();
    r.setAddress(rseq.value().address);
    r.setLength(rseq.value().length);
    r.setSignature(rseq.value().signature);
  }
  uint64_t head = 0;
  size_t length = 0;
  if (::syscall(SYS_get_robust_list, tid, &head, &length) == 0) {
    out.setRobustList(head);
    out.setRobustListLength(length);
  }
  out.setPolicy(sched.policy);
  out.setPriority(sched.priority);
  out.setNice(sched.nice);
  if (sched.has_affinity) out.setAffinity(as_data(&sched.affinity, sizeof sched.affinity));
  return Status::Ok();
}

// What only a thread itself can tell, read by calls injected in it: its alternate signal stack
// (sigaltstack) and its clear_child_tid address (PR_GET_TID_ADDRESS).
// With them, what /proc would also tell but the thread tells faster: its tid as the process
// sees it (gettid) and its name (PR_GET_NAME).
struct ThreadExtras {
  stack_t alt{};
  uint64_t tid_address = 0;
  bool has_tid_address = false;
  pid_t tid_seen = 0;
  std::string name;
};

// `in_job`: the process is in a job's pid namespace, where tid_seen is the thread's tid.
Status store_thread_extras(pid_t tid, const ThreadExtras& x, bool in_job, wire::Thread::Builder out) {
  if (x.alt.ss_flags & SS_ONSTACK)
    return make_error(ErrorCode::kRefused, "thread " + std::to_string(tid) +
                                               " is running a signal handler on its alternate stack: try again later");
  auto alt = out.initAltStack();
  alt.setBase(reinterpret_cast<uint64_t>(x.alt.ss_sp));
  alt.setSize(x.alt.ss_size);
  alt.setFlags(uint32_t(x.alt.ss_flags));
  if (x.has_tid_address) out.setClearChildTid(x.tid_address);
  if (in_job) out.setTidInJob(uint32_t(x.tid_seen));
  out.setName(x.name);
  return Status::Ok();
}

// Without a code page: one call at a time, with a word of the thread's stack page as scratch,
// saved and put back.
Result<ThreadExtras> read_thread_extras(Tracee& t, size_t page) {
  auto regs = t.regs();
  if (!regs) return regs.error();
  SameCpu pinned(t.pid());
  Scratch scratch(t, regs.value().rsp & ~uint64_t(page - 1), sizeof(stack_t));
  if (!scratch.ok()) return make_error(ErrorCode::kUnavailable, "thread " + std::to_string(t.pid()) + ": no scratch memory");
  ThreadExtras x;
  auto rc = t.syscall(SYS_sigaltstack, 0, scratch.address());
  if (!rc) return rc.error();
  if (rc.value() == 0)
    if (Status st = t.read_memory(scratch.address(), std::as_writable_bytes(std::span(&x.alt, 1))); !st) return st.error();
  rc = t.syscall(SYS_prctl, PR_GET_TID_ADDRESS, scratch.address());
  if (!rc) return rc.error();
  x.has_tid_address = rc.value() == 0 &&
                      t.read_memory(scratch.address(), std::as_writable_bytes(std::span(&x.tid_address, 1))).ok();
  if (auto ns = namespace_pids(t.pid()); ns) x.tid_seen = ns.value().back();
  x.name = read_text("/proc/" + std::to_string(t.pid()) + "/comm");
  while (!x.name.empty() && x.name.back() == '\n') x.name.pop_back();
  return x;
}

// With a code page: a batch in each thread, all running at once, each from its page (`pages`,
// one per thread), where the calls write what they read.
Result<std::vector<ThreadExtras>> read_thread_extras_at_once(const std::vector<Tracee*>& threads, uint64_t pages, size_t page) {
  struct Read {
    stack_t alt;
    uint64_t tid_address;
    char name[16];
  };
  std::vector<CallBatch> batches;
  std::vector<uint64_t> at;
  for (size_t i = 0; i < threads.size(); ++i) {
    CallBatch& b = batches.emplace_back(pages + i * page, page, "capture of thread " + std::to_string(threads[i]->pid()));
    Read zero{};
    uint64_t r = b.data(&zero, sizeof zero);
    at.push_back(r);
    b.add("sigaltstack", SYS_sigaltstack, {0, r + offsetof(Read, alt)}, /*may_fail=*/true);
    b.add("PR_GET_TID_ADDRESS", SYS_prctl, {PR_GET_TID_ADDRESS, r + offsetof(Read, tid_address)}, /*may_fail=*/true);
    b.add("gettid", SYS_gettid, {});
    b.add("PR_GET_NAME", SYS_prctl, {PR_GET_NAME, r + offsetof(Read, name)});
  }
  auto results = run_at_once(batches, threads);
  if (!results) return results.error();
  std::vector<ThreadExtras> out(threads.size());
  for (size_t i = 0; i < threads.size(); ++i) {
    const auto& r = results.value()[i];
    Read got{};
    if (Status st = threads[i]->read_memory(at[i], std::as_writable_bytes(std::span(&got, 1))); !st) return st.error();
    if (r[0] == 0) out[i].alt = got.alt;
    out[i].has_tid_address = r[1] == 0;
    out[i].tid_address = got.tid_address;
    out[i].tid_seen = pid_t(r[2]);
    out[i].name.assign(got.name, strnlen(got.name, sizeof got.name));
  }
  return out;
}

}  // namespace

// A thread in an uninterruptible sleep (state D: a stuck device or network file system)
// cannot be stopped until it wakes, and seizing it would hang the freeze: wait a little, then
// refuse, before anything is seized.
static Status refuse_if_stuck(pid_t pid, pid_t tid) {
  constexpr auto kStuckBound = std::chrono::seconds(2);
  auto deadline = std::chrono::steady_clock::now() + kStuckBound;
  for (;;) {
    std::string stat = read_text("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'D') return Status::Ok();
    if (std::chrono::steady_clock::now() > deadline) {
      std::string wchan = read_text("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/wchan");
      return make_error(ErrorCode::kRefused, "thread " + std::to_string(tid) + " of process " + std::to_string(pid) +
                                                 " has been in an uninterruptible sleep for over 2 s (in " +
                                                 (wchan.empty() ? std::string("the kernel") : wchan) +
                                                 "): it cannot be frozen now; try again later");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Result<std::unique_ptr<FrozenProcess>> FrozenProcess::freeze(pid_t pid) {
  std::vector<pid_t> checked = task_ids(pid);  // before anything is seized
  for (pid_t tid : checked)
    if (Status s = refuse_if_stuck(pid, tid); !s) return s.error();
  // A leader that called pthread_exit is a zombie while its threads run on: the first live
  // thread stands in for it.
  bool exited = ::ferry::pm::leader_exited(pid);
  auto t = Tracee::seize(exited ? task_with_memory(pid) : pid);
  if (!t) return t.error();
  std::unique_ptr<FrozenProcess> frozen(new FrozenProcess(std::move(t).value(), pid, exited));
  if (Status s = frozen->freeze_threads(checked); !s) return s.error();  // the destructor lets them all go
  return frozen;
}

// A frozen thread cannot make another, so once a look at the thread list finds none that is
// not frozen, all are. Threads born since `checked` was listed are checked for a stuck sleep
// here, inside the freeze; the others were before it.
Status FrozenProcess::freeze_threads(const std::vector<pid_t>& checked) {
  constexpr int kMaxLooks = 50;
  constexpr auto kExitBound = std::chrono::seconds(2);
  pid_t pid = tgid_;
  std::set<pid_t> seen{pid, tracee_->pid()};  // an exited leader is no thread to freeze
  std::map<pid_t, Error> exiting;  // could not be seized: exiting (or traced by someone else)
  for (int look = 0; look < kMaxLooks; ++look) {
    bool fresh = false;
    size_t first_new = threads_.size();
    for (pid_t tid : task_ids(pid)) {
      if (!seen.insert(tid).second) continue;
      fresh = true;
      if (!std::binary_search(checked.begin(), checked.end(), tid))
        if (Status st = refuse_if_stuck(pid, tid); !st) return st;
      auto t = Tracee::seize_started(tid);  // all asked to stop, then all waited for
      if (!t) {
        if (t.error().code != ErrorCode::kNotFound && t.error().code != ErrorCode::kUnauthorized) return t.error();
        exiting.emplace(tid, t.error());
        continue;
      }
      threads_.push_back(std::move(t).value());
    }
    for (size_t i = first_new; i < threads_.size();) {
      Status st = threads_[i]->stopped();
      if (st) {
        ++i;
      } else if (st.error().code == ErrorCode::kNotFound) {  // it exited meanwhile
        exiting.emplace(threads_[i]->pid(), st.error());
        threads_.erase(threads_.begin() + ptrdiff_t(i));
      } else {
        return st;
      }
    }
    if (fresh) continue;
    // A thread that was exiting still writes its clear_child_tid word and wakes its joiner:
    // wait until it is gone, so that what the capture sees is what the process will see.
    auto deadline = std::chrono::steady_clock::now() + kExitBound;
    for (auto it = exiting.begin(); it != exiting.end();) {
      auto tids = task_ids(pid);
      if (!std::binary_search(tids.begin(), tids.end(), it->first)) {
        it = exiting.erase(it);
      } else if (std::chrono::steady_clock::now() > deadline) {
        return make_error(ErrorCode::kRefused, "thread " + std::to_string(it->first) + " of process " +
                                                   std::to_string(pid) + " can be neither frozen nor seen to end: " +
                                                   it->second.message);
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    std::sort(threads_.begin(), threads_.end(), [](const auto& a, const auto& b) { return a->pid() < b->pid(); });
    return Status::Ok();
  }
  return make_error(ErrorCode::kRefused, "process " + std::to_string(pid) + " makes threads faster than they can be frozen (" +
                                             std::to_string(threads_.size() + 1) + " after " + std::to_string(kMaxLooks) +
                                             " looks)");
}

FrozenProcess::~FrozenProcess() = default;  // the Tracees detach: the process runs on

Status FrozenProcess::resume() {
  Status first = Status::Ok();
  for (auto& t : threads_)
    if (Status s = t->detach(); !s && first) first = s;
  if (Status s = tracee_->detach(); !s && first) first = s;
  return first;
}

void FrozenProcess::kill() {
  ::kill(tgid_, SIGKILL);
  for (auto& t : threads_) t->kill();  // as their tracer, wait for each thread's end
  tracee_->kill();
}

Status FrozenProcess::hand_over() {
  auto site = find_syscall_site(tracee_->pid());
  if (!site) return site.error();
  // Every thread points at exit_group: whichever runs first ends them all.
  auto to_exit = [&](Tracee& t) -> Status {
    auto regs = t.regs();
    if (!regs) return regs.error();
    user_regs_struct r = regs.value();
    r.rip = site.value();
    r.rax = SYS_exit_group;
    r.orig_rax = uint64_t(-1);
    r.rdi = 128 + SIGKILL;
    return t.set_regs(r);
  };
  for (auto& t : threads_)
    if (Status s = to_exit(*t); !s) return s;
  if (Status s = to_exit(*tracee_); !s) return s;
  // SIGSTOP for the whole group first (detach_stopped), then the others let go: they join its stop.
  if (Status s = tracee_->detach_stopped(); !s) return s;
  for (auto& t : threads_) (void)t->detach();
  return Status::Ok();
}

Status FrozenProcess::capture(wire::ProcessImage::Builder image, const CaptureOptions& options) {
  pid_t pid = tracee_->pid();  // its /proc entries: the process's, even when the leader has exited
  std::vector<Scheduling> sched;  // before SameCpu changes the leader's affinity
  sched.push_back(read_scheduling(pid));
  for (auto& t : threads_) sched.push_back(read_scheduling(t->pid()));
  SameCpu pinned(pid);
  auto status = parse_status(read_text(proc(pid, "status")));
  if (!status) return status.error();
  auto maps = read_maps(pid);
  if (!maps) return maps.error();
  auto fds = read_fds(pid);
  if (!fds) return fds.error();
  if (Status s = check_movable(pid, status.value(), maps.value(), fds.value()); !s) return s;

  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  image.setSourcePid(uint32_t(tgid_));
  image.setLeaderExited(leader_exited_);
  // One level below ours: a job's own namespace (deeper ones are refused by check_movable).
  if (auto ns = namespace_pids(tgid_); ns && ns.value().size() == 2) image.setPidInJob(uint32_t(ns.value()[1]));
  image.setPageSize(uint32_t(page));
  image.setExe(read_link(proc(pid, "exe")));
  std::string cmdline = read_text(proc(pid, "cmdline"));
  for (char& c : cmdline)
    if (c == '\0') c = ' ';
  while (!cmdline.empty() && cmdline.back() == ' ') cmdline.pop_back();
  image.setCommand(cmdline);
  image.setCwd(read_link(proc(pid, "cwd")));
  image.setUmask(status.value().umask);
  image.setResidentAnonBytes(status.value().rss_anon_kib * 1024);
  image.setLazyPresence(options.lazy_presence);
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  image.setCapturedAtNs(uint64_t(now.tv_sec) * 1000000000ull + uint64_t(now.tv_nsec));

  // Registers and extended state.
  auto regs = tracee_->regs();
  if (!regs) return regs.error();
  image.setRegs(as_data(&regs.value(), sizeof regs.value()));
  auto xstate = tracee_->xstate();
  if (!xstate) return xstate.error();
  image.setXstate(as_data(xstate.value().data(), xstate.value().size()));

  // Memory map, with which pages carry content.
  int pagemap = ::open(proc(pid, "pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) return make_error(ErrorCode::kUnavailable, errno_message("open pagemap", errno));
  auto vmas = image.initVmas(uint32_t(maps.value().size()));
  for (uint32_t i = 0; i < maps.value().size(); ++i) {
    const Vma& v = maps.value()[i];
    auto w = vmas[i];
    w.setStart(v.start);
    w.setEnd(v.end);
    w.setProt(uint32_t(v.prot()));
    w.setKind(vma_kind(v));
    w.setPath(v.path);
    w.setOffset(v.offset);
    w.setInode(v.inode);
    w.setDevice(makedev(v.dev_major, v.dev_minor));
    w.setGrowsDown(v.path == "[stack]");
    w.setShared(v.shared && v.path != "[vsyscall]");
    bool shared_memory = is_shared_memory(v, fds.value());
    if (shared_memory) w.setKind(wire::Vma::Kind::SHARED_MEMORY);
    bool lazy = vma_kind(v) == wire::Vma::Kind::ANONYMOUS || vma_kind(v) == wire::Vma::Kind::HEAP ||
                vma_kind(v) == wire::Vma::Kind::STACK || shared_memory;
    if (!v.is_special() && v.prot() != PROT_NONE && (!v.shared || shared_memory) && (options.lazy_presence || !lazy)) {
      if (Status s = fill_present(pid, pagemap, v, w, page); !s) {
        ::close(pagemap);
        return s;
      }
    }
  }
  ::close(pagemap);

  auto syscall_site = find_syscall_site(pid);
  if (!syscall_site) return syscall_site.error();
  tracee_->set_syscall_site(syscall_site.value());
  for (auto& t : threads_) t->set_syscall_site(syscall_site.value());

  // What ptrace and /proc tell of the signals and of every thread, before any call is injected.
  if (Status s = capture_signal_state(*tracee_, image.initSignals()); !s) return s;
  auto threads = image.initThreads(uint32_t(thread_count() + (leader_exited_ ? 1 : 0)));
  uint32_t next = 0;
  if (leader_exited_) {
    // The leader is only its tid and name; the thread that stood in for it is a thread like
    // the others, and the image's own registers, rseq and signals are no thread's.
    threads[next].setTid(uint32_t(tgid_));
    if (auto ns = namespace_pids(tgid_); ns && ns.value().size() == 2) threads[next].setTidInJob(uint32_t(ns.value()[1]));
    std::string name = read_text(proc(tgid_, "comm"));
    while (!name.empty() && name.back() == '\n') name.pop_back();
    threads[next++].setName(name);
    image.getSignals().initPending(0);
    image.getSignals().setBlocked(~0ull);
  }
  bool sigcont = ((status.value().sig_pending_thread | status.value().sig_pending_shared) >> (SIGCONT - 1)) & 1;
  std::vector<Tracee*> all{tracee_.get()}, others;
  std::vector<uint32_t> entry{next};
  if (Status s = capture_thread_state(*tracee_, !leader_exited_, sched[0], threads[next++], &sigcont); !s) return s;
  for (size_t i = 0; i < threads_.size(); ++i) {
    all.push_back(threads_[i].get());
    others.push_back(threads_[i].get());
    entry.push_back(next);
    if (Status s = capture_thread_state(*threads_[i], false, sched[i + 1], threads[next++], &sigcont); !s) return s;
  }

  // From here calls are injected, from a code page of the capture's when the process can have
  // one; it is gone when the capture returns.
  CaptureCodePage code(*tracee_, others, page, sigcont);

  // mm fields; brk itself only the process can tell (brk(0) returns it).
  auto mm = parse_stat_mm(read_text(proc(pid, "stat")));
  if (!mm) return mm.error();
  auto brk = tracee_->syscall(SYS_brk, 0);
  if (!brk) return brk.error();
  auto m = image.initMm();
  m.setStartCode(mm.value().start_code);
  m.setEndCode(mm.value().end_code);
  m.setStartData(mm.value().start_data);
  m.setEndData(mm.value().end_data);
  m.setStartBrk(mm.value().start_brk);
  m.setBrk(uint64_t(brk.value()));
  m.setStartStack(mm.value().start_stack);
  m.setArgStart(mm.value().arg_start);
  m.setArgEnd(mm.value().arg_end);
  m.setEnvStart(mm.value().env_start);
  m.setEnvEnd(mm.value().env_end);
  std::string auxv = read_text(proc(pid, "auxv"));
  image.setAuxv(as_data(auxv.data(), auxv.size()));

  auto rseq = tracee_->rseq();
  if (!rseq) return rseq.error();
  auto r = image.initRseq();
  r.setAddress(leader_exited_ ? 0 : rseq.value().address);  // (then the stand-in thread's, in its entry)
  r.setLength(rseq.value().length);
  r.setSignature(rseq.value().signature);

  // Open files (check_movable let only restorable ones through).
  auto files = image.initFiles(uint32_t(fds.value().size()));
  for (uint32_t i = 0; i < fds.value().size(); ++i) {
    const OpenFd& f = fds.value()[i];
    files[i].setFd(f.fd);
    files[i].setPath(f.target);
    files[i].setFlags(f.flags);
    files[i].setPosition(f.position);
    bool on_path = !f.target.empty() && f.target.front() == '/';
    if (is_kernel_object(f)) {
      if (Status s = capture_kernel_object(pid, f, files[i]); !s) return s;
    } else if (f.target.rfind("socket:", 0) == 0 && f.fd > 2) {
      if (Status s = capture_unix_socket(pid, f, files[i]); !s) return s;
    } else if (is_fifo(f)) {
      if (Status s = capture_fifo(pid, f, files[i]); !s) return s;
    } else if (f.target.rfind("pipe:", 0) == 0 && f.fd > 2) {
      files[i].setKind(wire::OpenFile::Kind::PIPE);
      files[i].setPipe(std::stoull(f.target.substr(6)));
      if ((f.flags & O_ACCMODE) == O_RDONLY) {
        auto unread = peek_pipe(pid, f.fd);
        if (!unread) return unread.error();
        if (!unread.value().empty()) files[i].setUnread(as_data(unread.value().data(), unread.value().size()));
      }
    } else if (!on_path) {
      files[i].setKind(wire::OpenFile::Kind::STDIO);
    } else {
      files[i].setKind(S_ISREG(f.mode)   ? wire::OpenFile::Kind::REGULAR
                       : S_ISDIR(f.mode) ? wire::OpenFile::Kind::DIRECTORY
                                         : wire::OpenFile::Kind::CHARACTER_DEVICE);
    }
  }

  if (Status s = describe_carried(pid, maps.value(), fds.value(), image); !s) return s;

  std::vector<std::pair<int, rlimit>> limits;
  for (int res = 0; res < RLIM_NLIMITS; ++res) {
    rlimit l{};
    if (::prlimit(pid, __rlimit_resource(res), nullptr, &l) == 0) limits.emplace_back(res, l);
  }
  auto rl = image.initRlimits(uint32_t(limits.size()));
  for (uint32_t i = 0; i < limits.size(); ++i) {
    rl[i].setResource(uint32_t(limits[i].first));
    rl[i].setSoft(limits[i].second.rlim_cur);
    rl[i].setHard(limits[i].second.rlim_max);
  }

  // Signal handlers are read by the process itself (rt_sigaction).
  uint64_t scratch = (regs.value().rsp & ~uint64_t(page - 1));
  if (Status s = capture_handlers(*tracee_, status.value(), code.leader_area(), scratch, image.getSignals()); !s) return s;

  // setitimer's timers (alarm() among them): only the process can tell. A timer keeps running
  // while the process is frozen: when it expires the kernel queues its signal and arms it again
  // only once the signal is taken. So the timers are read between two looks at the
  // process-wide pending signals, again if a timer's signal came in between, and the image
  // keeps the second look.
  {
    Scratch timer_scratch(*tracee_, scratch, sizeof(itimerval));
    if (!timer_scratch.ok()) return make_error(ErrorCode::kUnavailable, "no scratch memory to read interval timers");
    auto timer_signals_pending = [&]() -> Result<uint32_t> {
      auto infos = tracee_->pending_siginfo(true);
      if (!infos) return infos.error();
      uint32_t bits = 0;
      for (const auto& info : infos.value())
        for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF})
          if (signal_number(info) == timer_signal(which)) bits |= 1u << which;
      return bits;
    };
    std::vector<std::pair<int, itimerval>> armed;
    for (int look = 0;; ++look) {
      auto before = timer_signals_pending();
      if (!before) return before.error();
      armed.clear();
      std::vector<std::pair<int, itimerval>> read;
      for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF}) {
        auto rc = tracee_->syscall(SYS_getitimer, uint64_t(which), timer_scratch.address());
        if (!rc) return rc.error();
        itimerval v{};
        if (rc.value() != 0) continue;
        if (Status st = tracee_->read_memory(timer_scratch.address(), std::as_writable_bytes(std::span(&v, 1))); !st) return st;
        read.emplace_back(which, v);
      }
      if (Status s = capture_pending_shared(*tracee_, image.getSignals()); !s) return s;
      auto after = timer_signals_pending();
      if (!after) return after.error();
      if (after.value() != before.value() && look < 4) continue;
      for (auto [which, v] : read) {
        // A periodic timer whose signal waits undelivered shows no time left: the copy queued
        // on the destination will not arm it again. Its next expiration is a period away.
        bool interval = v.it_interval.tv_sec != 0 || v.it_interval.tv_usec != 0;
        if (v.it_value.tv_sec == 0 && v.it_value.tv_usec == 0 && interval && ((after.value() >> which) & 1))
          v.it_value = v.it_interval;
        if (v.it_value.tv_sec != 0 || v.it_value.tv_usec != 0) armed.emplace_back(which, v);
      }
      break;
    }
    auto list = image.initItimers(uint32_t(armed.size()));
    for (uint32_t i = 0; i < armed.size(); ++i) {
      const itimerval& v = armed[i].second;
      list[i].setWhich(armed[i].first);
      list[i].setValueUs(uint64_t(v.it_value.tv_sec) * 1000000 + uint64_t(v.it_value.tv_usec));
      list[i].setIntervalUs(uint64_t(v.it_interval.tv_sec) * 1000000 + uint64_t(v.it_interval.tv_usec));
    }
  }

  // What only each thread can tell (its alternate stack, its clear_child_tid address): all at
  // once with the code page.
  const bool in_job = image.getPidInJob() != 0;
  if (code.mapped()) {
    auto extras = read_thread_extras_at_once(all, code.extras_pages(), page);
    if (!extras) return extras.error();
    for (size_t i = 0; i < all.size(); ++i)
      if (Status s = store_thread_extras(all[i]->pid(), extras.value()[i], in_job, threads[entry[i]]); !s) return s;
  } else {
    for (size_t i = 0; i < all.size(); ++i) {
      auto x = read_thread_extras(*all[i], page);
      if (!x) return x.error();
      if (Status s = store_thread_extras(all[i]->pid(), x.value(), in_job, threads[entry[i]]); !s) return s;
    }
  }

  // timer_create's timers, after the threads and their pending signals (pm/posix_timers.h).
  {
    Scratch timer_scratch(*tracee_, scratch, sizeof(itimerspec));
    if (!timer_scratch.ok()) return make_error(ErrorCode::kUnavailable, "no scratch memory to read POSIX timers");
    if (Status s = capture_posix_timers(*tracee_, timer_scratch.address(), image); !s) return s;
  }

  auto creds = image.initCreds();
  auto uid = creds.initUid(4);
  auto gid = creds.initGid(4);
  for (uint32_t i = 0; i < 4; ++i) {
    uid.set(i, status.value().uid[i]);
    gid.set(i, status.value().gid[i]);
  }
  auto groups = creds.initGroups(uint32_t(status.value().groups.size()));
  for (uint32_t i = 0; i < status.value().groups.size(); ++i) groups.set(i, status.value().groups[i]);
  return Status::Ok();
}

Status FrozenProcess::read_pages(wire::ProcessImage::Reader image,
                                 const std::function<Status(uint64_t, std::span<const std::byte>)>& sink,
                                 size_t chunk, const std::function<bool(wire::Vma::Reader)>& only) {
  const size_t page = image.getPageSize();
  auto buf = std::make_unique_for_overwrite<std::byte[]>(chunk);  // not zeroed: only what is read is touched
  for (auto v : image.getVmas()) {
    if (only && !only(v)) continue;
    auto bits = v.getPresent();
    size_t pages = (v.getEnd() - v.getStart()) / page;
    size_t p = 0;
    while (p < pages && bits.size() > 0) {
      while (p < pages && !((bits[p / 8] >> (p % 8)) & 1)) ++p;
      size_t run = p;
      while (run < pages && (run - p + 1) * page <= chunk && ((bits[run / 8] >> (run % 8)) & 1)) ++run;
      if (run == p) break;
      uint64_t at = v.getStart() + p * page;
      std::span<std::byte> out(buf.get(), (run - p) * page);
      if (Status s = tracee_->read_memory(at, out); !s) return s;
      if (Status s = sink(at, out); !s) return s;
      p = run;
    }
  }
  return Status::Ok();
}

Status FrozenProcess::read_eager_pages(wire::ProcessImage::Reader image,
                                       const std::function<Status(uint64_t, std::span<const std::byte>)>& sink) {
  if (Status s = read_pages(image, sink, 1 << 20, [](wire::Vma::Reader v) { return !is_lazy(v); }); !s) return s;
  std::vector<std::byte> page(image.getPageSize());
  for (uint64_t at : pages_written_by_restore(image)) {
    if (Status s = tracee_->read_memory(at, page); !s) return s;
    if (Status s = sink(at, page); !s) return s;
  }
  return Status::Ok();
}

}  // namespace ferry::pm
