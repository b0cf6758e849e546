#include "pm/tracee.h"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "pm/injected_code.h"

namespace ferry::pm {
namespace {

std::string who(pid_t pid) { return "process " + std::to_string(pid); }

Error sys_error(pid_t pid, const std::string& what, int err) {
  return make_error(err == ESRCH ? ErrorCode::kNotFound : ErrorCode::kUnavailable,
                    errno_message(who(pid) + ": " + what, err));
}

}  // namespace

Result<std::unique_ptr<Tracee>> Tracee::seize(pid_t pid, bool kill_with_tracer) {
  auto t = seize_started(pid, kill_with_tracer);
  if (!t) return t.error();
  if (Status s = t.value()->stopped(); !s) return s.error();
  return t;
}

Status Tracee::stopped() { return wait_stop("freeze"); }

Result<std::unique_ptr<Tracee>> Tracee::seize_started(pid_t pid, bool kill_with_tracer) {
  if (pid <= 0) return make_error(ErrorCode::kInvalid, "invalid pid " + std::to_string(pid));
  // Syscall stops told apart from SIGTRAPs (injected calls without a code page use them).
  long options = PTRACE_O_TRACESYSGOOD | (kill_with_tracer ? PTRACE_O_EXITKILL : 0);
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(options)) != 0) {
    int err = errno;
    if (err == ESRCH) return make_error(ErrorCode::kNotFound, "no process " + std::to_string(pid));
    if (err == EPERM) {
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string line;
      std::getline(stat, line);
      auto paren = line.rfind(')');
      if (paren != std::string::npos && line.size() > paren + 2 && line[paren + 2] == 'Z')
        return make_error(ErrorCode::kNotFound, who(pid) + " has exited");
      return make_error(ErrorCode::kUnauthorized, who(pid) + " cannot be traced (already traced, or not permitted)");
    }
    return sys_error(pid, "PTRACE_SEIZE", err);
  }
  std::unique_ptr<Tracee> t(new Tracee(pid, false));
  t->options_ = options;
  if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) return sys_error(pid, "PTRACE_INTERRUPT", errno);
  return t;
}

Result<std::unique_ptr<Tracee>> Tracee::adopt_exec_stopped_child(pid_t pid) {
  std::unique_ptr<Tracee> t(new Tracee(pid, true));
  if (Status s = t->wait_stop("exec"); !s) {
    t->attached_ = false;
    return s.error();
  }
  t->options_ = PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD;
  ::ptrace(PTRACE_SETOPTIONS, pid, nullptr, t->options_);
  return t;
}

Result<std::unique_ptr<Tracee>> Tracee::adopt_new_thread(pid_t tid) {
  std::unique_ptr<Tracee> t(new Tracee(tid, false));
  // Its first stop: the SIGSTOP that auto-attaching queues (a signal-delivery stop; resuming
  // with no signal drops it), or PTRACE_EVENT_STOP for a seized tracer.
  for (;;) {
    int status = 0;
    if (::waitpid(tid, &status, __WALL) < 0) {
      if (errno == EINTR) continue;
      t->attached_ = false;
      return sys_error(tid, "waiting for a new thread's first stop", errno);
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      t->attached_ = false;
      return make_error(ErrorCode::kNotFound, who(tid) + " (a new thread) died before its first stop");
    }
    if (WIFSTOPPED(status)) {
      t->options_ = PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD;  // as its process's tracee had
      return t;
    }
  }
}

Status Tracee::set_trace_clone(bool trace_clone) {
  long options = trace_clone ? (options_ | PTRACE_O_TRACECLONE) : (options_ & ~long(PTRACE_O_TRACECLONE));
  if (::ptrace(PTRACE_SETOPTIONS, pid_, nullptr, options) != 0) return sys_error(pid_, "PTRACE_SETOPTIONS", errno);
  options_ = options;
  return Status::Ok();
}

Tracee::~Tracee() {
  if (attached_) (void)detach();
  if (mem_fd_ >= 0) ::close(mem_fd_);
}

Status Tracee::wait_stop(const char* what) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return sys_error(pid_, std::string("waiting for the ") + what + " stop", errno);
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      attached_ = false;
      return make_error(ErrorCode::kNotFound, who(pid_) + " exited during " + what);
    }
    if (!WIFSTOPPED(status)) continue;
    int sig = WSTOPSIG(status);
    int event = status >> 16;
    if (event == PTRACE_EVENT_STOP || sig == SIGTRAP) return Status::Ok();
    // A signal was being delivered when we seized it (a signal-delivery stop, the signal taken
    // off its queue): let the delivery go on and interrupt again (that stop disarmed our first
    // interrupt). The second interrupt may arm one more trap once the process has taken the
    // first: syscall() steps past such a stray interrupt stop.
    if (::ptrace(PTRACE_CONT, pid_, nullptr, reinterpret_cast<void*>(uintptr_t(sig))) != 0)
      return sys_error(pid_, "PTRACE_CONT", errno);
    if (child_ == false) ::ptrace(PTRACE_INTERRUPT, pid_, nullptr, nullptr);
  }
}

Result<user_regs_struct> Tracee::regs() {
  user_regs_struct r{};
  if (::ptrace(PTRACE_GETREGS, pid_, nullptr, &r) != 0) return sys_error(pid_, "PTRACE_GETREGS", errno);
  return r;
}

Status Tracee::set_regs(const user_regs_struct& r) {
  if (::ptrace(PTRACE_SETREGS, pid_, nullptr, &r) != 0) return sys_error(pid_, "PTRACE_SETREGS", errno);
  return Status::Ok();
}

Result<std::vector<std::byte>> Tracee::xstate() {
  std::vector<std::byte> buf(64 * 1024);
  iovec iov{buf.data(), buf.size()};
  if (::ptrace(PTRACE_GETREGSET, pid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    return sys_error(pid_, "PTRACE_GETREGSET NT_X86_XSTATE", errno);
  buf.resize(iov.iov_len);
  return buf;
}

Status Tracee::set_xstate(std::span<const std::byte> xstate) {
  std::vector<std::byte> copy(xstate.begin(), xstate.end());
  iovec iov{copy.data(), copy.size()};
  if (::ptrace(PTRACE_SETREGSET, pid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    return sys_error(pid_, "PTRACE_SETREGSET NT_X86_XSTATE", errno);
  return Status::Ok();
}

Result<uint64_t> Tracee::blocked_signals() {
  uint64_t mask = 0;  // the kernel's sigset: 8 bytes (glibc's 128-byte sigset_t gives EINVAL)
  if (::ptrace(PTRACE_GETSIGMASK, pid_, reinterpret_cast<void*>(sizeof mask), &mask) != 0)
    return sys_error(pid_, "PTRACE_GETSIGMASK", errno);
  return mask;
}

Status Tracee::set_blocked_signals(uint64_t mask) {
  if (::ptrace(PTRACE_SETSIGMASK, pid_, reinterpret_cast<void*>(sizeof mask), &mask) != 0)
    return sys_error(pid_, "PTRACE_SETSIGMASK", errno);
  return Status::Ok();
}

Result<std::vector<std::vector<std::byte>>> Tracee::pending_siginfo(bool shared) {
  std::vector<std::vector<std::byte>> out;
  for (uint32_t off = 0;; off += 16) {
    __ptrace_peeksiginfo_args args{off, shared ? uint32_t(PTRACE_PEEKSIGINFO_SHARED) : 0u, 16};
    siginfo_t infos[16];
    long n = ::ptrace(PTRACE_PEEKSIGINFO, pid_, &args, infos);
    if (n < 0) return sys_error(pid_, "PTRACE_PEEKSIGINFO", errno);
    for (long i = 0; i < n; ++i) {
      auto* p = reinterpret_cast<const std::byte*>(&infos[i]);
      out.emplace_back(p, p + sizeof(siginfo_t));
    }
    if (n < 16) return out;
  }
}

Result<RseqConfig> Tracee::rseq() {
  __ptrace_rseq_configuration conf{};
  long n = ::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid_, reinterpret_cast<void*>(sizeof conf), &conf);
  if (n < 0) return sys_error(pid_, "PTRACE_GET_RSEQ_CONFIGURATION", errno);
  return RseqConfig{conf.rseq_abi_pointer, conf.rseq_abi_size, conf.flags, conf.signature};
}

Status Tracee::read_memory(uint64_t address, std::span<std::byte> out) {
  if (mem_fd_ < 0) mem_fd_ = ::open(("/proc/" + std::to_string(pid_) + "/mem").c_str(), O_RDWR | O_CLOEXEC);
  if (mem_fd_ < 0) return sys_error(pid_, "open /proc/PID/mem", errno);
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(mem_fd_, out.data() + done, out.size() - done, off_t(address + done));
    if (n <= 0) {
      std::ostringstream at;
      at << "reading memory at 0x" << std::hex << address + done;
      return sys_error(pid_, at.str(), n < 0 ? errno : EIO);
    }
    done += size_t(n);
  }
  return Status::Ok();
}

Status Tracee::write_memory(uint64_t address, std::span<const std::byte> data) {
  if (mem_fd_ < 0) mem_fd_ = ::open(("/proc/" + std::to_string(pid_) + "/mem").c_str(), O_RDWR | O_CLOEXEC);
  if (mem_fd_ < 0) return sys_error(pid_, "open /proc/PID/mem", errno);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(mem_fd_, data.data() + done, data.size() - done, off_t(address + done));
    if (n <= 0) {
      std::ostringstream at;
      at << "writing memory at 0x" << std::hex << address + done;
      return sys_error(pid_, at.str(), n < 0 ? errno : EIO);
    }
    done += size_t(n);
  }
  return Status::Ok();
}

Status Tracee::begin_injection() {
  auto saved = regs();
  if (!saved) return saved.error();
  saved_regs_ = saved.value();
  // Every signal blocked while the calls run: a signal pending at the stop (an interrupt stop is
  // taken before pending signals are dequeued) or arriving meanwhile would otherwise be dequeued
  // on the way back to user space, into a signal-delivery stop that resuming discards. Blocked,
  // it stays queued: the capture sees it, or the process gets it when it runs on.
  auto mask = blocked_signals();
  if (!mask) return mask.error();
  saved_mask_ = mask.value();
  // (The kernel never blocks SIGKILL and SIGSTOP: a mask without them is all blocked already.)
  constexpr uint64_t kUnblockable = (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));
  mask_changed_ = (saved_mask_ | kUnblockable) != ~uint64_t(0);
  if (mask_changed_)
    if (Status s = set_blocked_signals(~uint64_t(0)); !s) return s;
  unblockable_ = 0;
  return Status::Ok();
}

Status Tracee::end_injection() {
  ++injected_;
  if (Status s = set_regs(saved_regs_); !s) return s;
  if (mask_changed_)
    if (Status s = set_blocked_signals(saved_mask_); !s) return s;
  if (unblockable_) ::kill(pid_, std::exchange(unblockable_, 0));
  return Status::Ok();
}

void Tracee::note_new_thread() {
  unsigned long tid = 0;
  if (::ptrace(PTRACE_GETEVENTMSG, pid_, nullptr, &tid) == 0) new_threads_.push_back(pid_t(tid));
}

Status Tracee::resume_into_code(const user_regs_struct& r) {
  if (Status s = set_regs(r); !s) return s;
  if (::ptrace(PTRACE_CONT, pid_, nullptr, nullptr) != 0) return sys_error(pid_, "PTRACE_CONT", errno);
  return Status::Ok();
}

Result<user_regs_struct> Tracee::wait_code_stop(const std::string& what) {
  const uint64_t stopped_at = code_page_ + injected_entry().stopped;
  for (;;) {
    int status = 0;
    if (::waitpid(pid_, &status, __WALL) < 0) {
      if (errno == EINTR) continue;
      return sys_error(pid_, "waiting for injected code", errno);
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      attached_ = false;
      return make_error(ErrorCode::kNotFound, who(pid_) + " died in " + what);
    }
    if (!WIFSTOPPED(status)) continue;
    int sig = WSTOPSIG(status), event = status >> 16;
    if (event == PTRACE_EVENT_CLONE) {
      note_new_thread();
    } else if (event == 0 && sig == SIGSTOP) {
      auto r = regs();
      if (!r) return r.error();
      if (r.value().rip == stopped_at) return r.value();  // the code stopped itself
      unblockable_ = SIGSTOP;  // someone else's: sent again once done
    } else if (event == 0) {
      // Every signal is blocked: only a fault of the code itself is delivered (a bad table).
      return make_error(ErrorCode::kInternal, who(pid_) + ": injected code got signal " + std::to_string(sig) + " in " + what);
    }
    // PTRACE_EVENT_STOP: a stray interrupt or a group stop taken on the way; on with the code.
    if (::ptrace(PTRACE_CONT, pid_, nullptr, nullptr) != 0) return sys_error(pid_, "PTRACE_CONT", errno);
  }
}

Result<user_regs_struct> Tracee::run_syscall_stops(const user_regs_struct& r, long number) {
  if (Status s = set_regs(r); !s) return s.error();
  bool entered = false;
  for (;;) {
    if (::ptrace(PTRACE_SYSCALL, pid_, nullptr, nullptr) != 0) return sys_error(pid_, "PTRACE_SYSCALL", errno);
    int status = 0;
    while (::waitpid(pid_, &status, __WALL) < 0)
      if (errno != EINTR) return sys_error(pid_, "waiting for an injected syscall", errno);
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      attached_ = false;
      return make_error(ErrorCode::kNotFound, who(pid_) + " died in injected syscall " + std::to_string(number));
    }
    if (!WIFSTOPPED(status)) continue;
    int sig = WSTOPSIG(status), event = status >> 16;
    if (sig == (SIGTRAP | 0x80)) {  // a syscall stop (PTRACE_O_TRACESYSGOOD)
      if (entered) return regs();
      entered = true;
    } else if (event == PTRACE_EVENT_CLONE) {
      note_new_thread();
    } else if (event == 0) {
      unblockable_ = sig;  // SIGSTOP (all else is blocked): dropped here, sent again once done
    }
    // PTRACE_EVENT_STOP: a stray interrupt or a group stop taken before the call: on with it.
  }
}

Result<long> Tracee::syscall(long number, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                             uint64_t a6) {
  if (!code_page_ && !syscall_site_)
    return make_error(ErrorCode::kInternal, "syscall injection without a code page or a syscall site");
  if (Status s = begin_injection(); !s) return s.error();
  user_regs_struct r = saved_regs_;
  r.rax = uint64_t(number);
  r.orig_rax = uint64_t(-1);  // not inside a syscall: no restart logic on resume
  r.rdi = a1;
  r.rsi = a2;
  r.rdx = a3;
  r.r10 = a4;
  r.r8 = a5;
  r.r9 = a6;
  long result = 0;
  if (code_page_) {
    r.rip = code_page_ + injected_entry().single;
    if (Status s = resume_into_code(r); !s) return s.error();
    auto after = wait_code_stop("injected syscall " + std::to_string(number));
    if (!after) return after.error();
    result = long(after.value().r12);
  } else {
    r.rip = syscall_site_;
    auto after = run_syscall_stops(r, number);
    if (!after) return after.error();
    result = long(after.value().rax);
  }
  if (Status s = end_injection(); !s) return s.error();
  return result;
}

Status Tracee::start_batch(uint64_t table, std::span<const Call> calls) {
  if (!code_page_) return make_error(ErrorCode::kInternal, "a batch of injected calls without a code page");
  std::vector<uint64_t> words(calls.size() * kInjectedCallBytes / 8);
  for (size_t i = 0; i < calls.size(); ++i) {
    uint64_t* w = &words[i * 8];
    w[0] = uint64_t(calls[i].number);
    for (int a = 0; a < 6; ++a) w[1 + a] = calls[i].args[a];
    w[7] = calls[i].may_fail ? 1 : 0;
  }
  if (Status s = write_memory(table, std::as_bytes(std::span(words))); !s) return s;
  if (Status s = begin_injection(); !s) return s;
  user_regs_struct r = saved_regs_;
  r.rip = code_page_ + injected_entry().batch;
  r.orig_rax = uint64_t(-1);
  r.rbx = table;
  r.rbp = calls.size();
  batch_table_ = table;
  batch_calls_ = calls.size();
  return resume_into_code(r);
}

Result<std::vector<long>> Tracee::finish_batch() {
  auto after = wait_code_stop("a batch of " + std::to_string(batch_calls_) + " injected calls");
  if (!after) return after.error();
  size_t left = size_t(after.value().rbp), made = batch_calls_ - left + (left > 0 ? 1 : 0);
  std::vector<uint64_t> words(made * kInjectedCallBytes / 8);
  if (Status s = read_memory(batch_table_, std::as_writable_bytes(std::span(words))); !s) return s.error();
  if (Status s = end_injection(); !s) return s.error();
  injected_ += int(made) - 1;
  std::vector<long> results(made);
  for (size_t i = 0; i < made; ++i) results[i] = long(words[i * 8 + 7]);
  return results;
}

Result<std::vector<long>> Tracee::run_batch(uint64_t table, std::span<const Call> calls) {
  if (Status s = start_batch(table, calls); !s) return s.error();
  return finish_batch();
}

Status Tracee::detach() {
  if (!attached_) return Status::Ok();
  // Stopped in a call the kernel would continue with restart_syscall (-516): issue the call
  // itself again (its arguments are still in the registers), as a restore does. Else a later
  // freeze finds it in restart_syscall, whose restart block does not move, and the migrated
  // process would see EINTR from a sleep it never had a signal in.
  if (auto r = regs(); r && reissue_after_freeze(r.value())) (void)set_regs(reissued(r.value()));
  attached_ = false;
  if (::ptrace(PTRACE_DETACH, pid_, nullptr, nullptr) != 0) return sys_error(pid_, "PTRACE_DETACH", errno);
  return Status::Ok();
}

Status Tracee::detach_stopped() {
  if (!attached_) return make_error(ErrorCode::kInvalid, who(pid_) + " is not attached");
  // The signal argument of PTRACE_DETACH is ignored in an interrupt stop: queue SIGSTOP first,
  // so that the process stops before it runs a single instruction.
  if (::kill(pid_, SIGSTOP) != 0) return sys_error(pid_, "SIGSTOP", errno);
  attached_ = false;
  if (::ptrace(PTRACE_DETACH, pid_, nullptr, nullptr) != 0) return sys_error(pid_, "PTRACE_DETACH", errno);
  return Status::Ok();
}

void Tracee::kill() {
  ::kill(pid_, SIGKILL);
  if (attached_ || child_) ::waitpid(pid_, nullptr, __WALL);
  attached_ = false;
}

bool Tracee::poll_exit() {
  if (!attached_) return true;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG | __WALL);
  if (r == pid_ && (WIFEXITED(status) || WIFSIGNALED(status))) {
    attached_ = false;
    return true;
  }
  return r < 0 && errno == ECHILD;
}

bool reissue_after_freeze(const user_regs_struct& regs) {
  if (long(regs.orig_rax) < 0) return false;
  if (long(regs.rax) == -516) return true;
  if (long(regs.rax) != -EINTR) return false;
  switch (long(regs.orig_rax)) {
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
    case SYS_epoll_pwait2:
    case SYS_rt_sigtimedwait:
    case SYS_semop:
    case SYS_semtimedop:
    case SYS_io_getevents:
    case SYS_io_pgetevents:
      return true;
    default:
      return false;
  }
}

user_regs_struct reissued(user_regs_struct regs) {
  regs.rax = regs.orig_rax;
  regs.rip -= 2;
  regs.orig_rax = uint64_t(-1);
  return regs;
}

Result<uint64_t> find_syscall_site(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  if (!maps) return make_error(ErrorCode::kNotFound, "no process " + std::to_string(pid));
  struct Range {
    uint64_t start, end;
  };
  std::vector<Range> ranges;
  for (std::string line; std::getline(maps, line);) {
    std::istringstream in(line);
    std::string span, perms;
    in >> span >> perms;
    if (perms.size() < 3 || perms[2] != 'x' || line.find("[vsyscall]") != std::string::npos) continue;
    Range r{std::stoull(span.substr(0, span.find('-')), nullptr, 16),
            std::stoull(span.substr(span.find('-') + 1), nullptr, 16)};
    if (line.find("[vdso]") != std::string::npos)
      ranges.insert(ranges.begin(), r);
    else
      ranges.push_back(r);
  }
  int fd = ::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error(pid, "open /proc/PID/mem", errno);
  std::vector<unsigned char> buf(64 * 1024);
  for (const auto& r : ranges) {
    for (uint64_t at = r.start; at < r.end; at += buf.size() - 1) {
      size_t len = size_t(std::min<uint64_t>(buf.size(), r.end - at));
      ssize_t n = ::pread(fd, buf.data(), len, off_t(at));
      if (n < 2) break;
      for (ssize_t i = 0; i + 1 < n; ++i)
        if (buf[size_t(i)] == 0x0f && buf[size_t(i) + 1] == 0x05) {
          ::close(fd);
          return at + uint64_t(i);
        }
    }
  }
  ::close(fd);
  return make_error(ErrorCode::kNotFound, who(pid) + " has no syscall instruction in its executable mappings");
}

SameCpu::SameCpu(pid_t tracee) : tracee_(tracee) {
  int cpu = ::sched_getcpu();
  if (cpu < 0 || ::sched_getaffinity(0, sizeof own_, &own_) != 0 ||
      ::sched_getaffinity(tracee, sizeof theirs_, &theirs_) != 0)
    return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (::sched_setaffinity(0, sizeof one, &one) != 0) return;
  pinned_ = true;
  (void)::sched_setaffinity(tracee, sizeof one, &one);  // may fail on a dying process: only slower
}

SameCpu::~SameCpu() {
  if (!pinned_) return;
  (void)::sched_setaffinity(tracee_, sizeof theirs_, &theirs_);
  (void)::sched_setaffinity(0, sizeof own_, &own_);
}

}  // namespace ferry::pm
