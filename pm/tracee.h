// A process held under ptrace, and what Ferry does to it while it is held: read and write its
// registers, extended state, signal mask and memory, and make it run system calls of our
// choosing (syscall injection). The building block of freeze, capture and restore.
//
// A Tracee owns its attachment: destroying it detaches and the process continues where it
// stopped (a syscall it was blocked in restarts as the kernel would restart it), unless
// kill() or release() was called. No early return can leave a process stopped. One exception
// to "as the kernel would": a call stopped with ERESTART_RESTARTBLOCK (a relative sleep) is
// issued again from the start, not continued by restart_syscall, because a later freeze of a
// process inside restart_syscall cannot tell which call it continues (docs/CAPTURE-RESTORE.md).
// Not thread-safe; ptrace requires all calls from the thread that attached.
#pragma once

#include <sched.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dipc/status.h"

namespace ferry::pm {

struct RseqConfig {
  uint64_t address = 0;
  uint32_t length = 0;
  uint32_t flags = 0;
  uint32_t signature = 0;
};

class Tracee {
 public:
  // Attaches to a running process (PTRACE_SEIZE) and stops it (PTRACE_INTERRUPT), also when
  // it is blocked in a system call. kNotFound for an unknown pid. With `kill_with_tracer`, the
  // kernel kills the process if this tracer dies (PTRACE_O_EXITKILL): for memory shells.
  static Result<std::unique_ptr<Tracee>> seize(pid_t pid, bool kill_with_tracer = false);
  // seize() in two halves, so that many threads stop at once: attached and asked to stop,
  // then (stopped()) waited for. Nothing else may be done with it in between.
  static Result<std::unique_ptr<Tracee>> seize_started(pid_t pid, bool kill_with_tracer = false);
  Status stopped();
  // Takes over a child that called PTRACE_TRACEME and then execve(): waits for its exec stop.
  static Result<std::unique_ptr<Tracee>> adopt_exec_stopped_child(pid_t pid);
  // A thread that an injected clone created in a traced process (PTRACE_O_TRACECLONE, see
  // take_new_thread()): waits for its first stop. It is not our child (the process is).
  static Result<std::unique_ptr<Tracee>> adopt_new_thread(pid_t tid);
  ~Tracee();
  Tracee(const Tracee&) = delete;
  Tracee& operator=(const Tracee&) = delete;

  pid_t pid() const { return pid_; }

  Result<user_regs_struct> regs();
  Status set_regs(const user_regs_struct& regs);
  // The XSAVE area (FPU, SSE, AVX, ...), as large as the kernel says it is.
  Result<std::vector<std::byte>> xstate();
  Status set_xstate(std::span<const std::byte> xstate);
  Result<uint64_t> blocked_signals();
  Status set_blocked_signals(uint64_t mask);
  // Queued signals, thread-private or process-wide (shared).
  Result<std::vector<std::vector<std::byte>>> pending_siginfo(bool shared);
  Result<RseqConfig> rseq();

  Status read_memory(uint64_t address, std::span<std::byte> out);
  // Through /proc/PID/mem: writes also into read-only and executable mappings.
  Status write_memory(uint64_t address, std::span<const std::byte> data);

  // Where an injected syscall is executed without a code page: the address of a `syscall`
  // instruction (0f 05) in an executable mapping of the tracee. The thread is stopped at the
  // call's entry and exit (PTRACE_SYSCALL): two stops a call, and no signal, so that nothing
  // of the process changes but what the call does.
  void set_syscall_site(uint64_t address) { syscall_site_ = address; }
  uint64_t syscall_site() const { return syscall_site_; }
  // Code page: a copy of injected_code() (pm/injected_code.h) at `address` in an executable
  // mapping of the process (0: none). With one, an injected call takes one stop, and
  // run_batch() runs many calls in one. Each such stop is a SIGSTOP the thread sends itself,
  // which discards a pending SIGCONT: without a code page when one may be pending. The caller
  // unmaps the page, after set_code_page(0).
  void set_code_page(uint64_t address) { code_page_ = address; }
  uint64_t code_page() const { return code_page_; }
  // Runs one system call in the tracee and returns its raw result (-errno on failure);
  // the tracee's registers and signal mask are left as they were. Every signal is blocked while
  // the call runs, so none is dequeued (and lost) by the injection: signals pending before or
  // arriving during it stay queued (a SIGSTOP that arrives is sent again afterwards). The call
  // must not change the signal mask itself. Precondition: a code page or a syscall site.
  Result<long> syscall(long number, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                       uint64_t a5 = 0, uint64_t a6 = 0);
  // A batch (needs a code page): `calls` run one after the other, stopping after the first
  // that fails unless it may fail. start_batch() writes their table at `table` (the caller's
  // memory in the process, kInjectedCallBytes a call, argument data already written) and lets
  // the thread run; finish_batch() waits for it and returns the results of the calls made
  // (the last is the failure, if one stopped it); registers and signal mask are put back as
  // with syscall(). Several threads may run their batches at once, each from its own table.
  struct Call {
    long number = 0;
    uint64_t args[6] = {};
    bool may_fail = false;
  };
  Status start_batch(uint64_t table, std::span<const Call> calls);
  Result<std::vector<long>> finish_batch();
  Result<std::vector<long>> run_batch(uint64_t table, std::span<const Call> calls);
  int injected_syscalls() const { return injected_; }
  // With `trace_clone` (PTRACE_O_TRACECLONE), a thread that an injected clone creates starts
  // traced and stopped, and the call's caller gets its tid once from take_new_thread(), in the
  // order the threads were made (0: none left).
  Status set_trace_clone(bool trace_clone);
  pid_t take_new_thread() {
    if (new_threads_.empty()) return 0;
    pid_t tid = new_threads_.front();
    new_threads_.pop_front();
    return tid;
  }

  // Lets the process run on (same as destroying the Tracee, but reports failure).
  Status detach();
  // Detaches but leaves the process stopped (SIGSTOP), for another tracer to take.
  Status detach_stopped();
  // Kills the process (SIGKILL) and reaps it if it is our child (or waits for this thread's
  // end, as its tracer must).
  void kill();
  // The thread is gone (its process was killed through another thread): nothing to detach.
  void forget() { attached_ = false; }
  // Without blocking: whether the process has died (someone killed it); reaps it as its tracer,
  // so that its parent can. Stops it reports meanwhile are consumed; it stays stopped.
  bool poll_exit();

 private:
  explicit Tracee(pid_t pid, bool child) : pid_(pid), child_(child) {}
  Status wait_stop(const char* what);
  // Saves registers and mask and blocks every signal, for an injection.
  Status begin_injection();
  Status end_injection();
  // Lets the thread run injected code from `regs` until it stops itself (code page), or through
  // one system call's entry and exit stops (syscall site); its registers then.
  Status resume_into_code(const user_regs_struct& regs);
  Result<user_regs_struct> wait_code_stop(const std::string& what);  // `what` runs, for errors
  void note_new_thread();  // at a PTRACE_EVENT_CLONE stop: for take_new_thread()
  Result<user_regs_struct> run_syscall_stops(const user_regs_struct& regs, long number);

  pid_t pid_;
  bool child_;
  bool attached_ = true;
  int mem_fd_ = -1;
  uint64_t syscall_site_ = 0;
  uint64_t code_page_ = 0;
  user_regs_struct saved_regs_{};  // during an injection
  uint64_t saved_mask_ = 0;
  bool mask_changed_ = false;
  int unblockable_ = 0;            // a SIGSTOP that arrived during an injection
  uint64_t batch_table_ = 0;
  size_t batch_calls_ = 0;
  int injected_ = 0;
  long options_ = 0;
  std::deque<pid_t> new_threads_;
};

// While alive, the calling thread and the tracee run on one CPU (the one the thread is on), so
// the stop and wake-up of each injected syscall stay on that CPU. On this 2-vCPU VM that makes
// a restore 3-4x faster (waking the other CPU costs tens of microseconds per stop). Both
// affinities are put back on destruction.
class SameCpu {
 public:
  explicit SameCpu(pid_t tracee);
  ~SameCpu();
  SameCpu(const SameCpu&) = delete;
  SameCpu& operator=(const SameCpu&) = delete;

 private:
  pid_t tracee_;
  bool pinned_ = false;
  cpu_set_t own_{}, theirs_{};
};

// Whether a thread stopped by a freeze at a system call's exit must have the call issued again
// by whoever lets it go, because the kernel will not restart it: ERESTART_RESTARTBLOCK (-516,
// whose restart block does not move with it), or the EINTR that Linux gives some calls when
// their caller is stopped and continued, even with no signal handled (signal(7),
// "Interruption of system calls ... by stop signals": epoll_wait, sigtimedwait, semop, ...):
// the freeze caused it.
bool reissue_after_freeze(const user_regs_struct& regs);
// The registers that issue the call again: back over the `syscall` instruction, with the
// call's number in rax (its arguments are still in the registers).
user_regs_struct reissued(user_regs_struct regs);

// Finds a `syscall` instruction in the process's executable mappings (the vDSO first).
Result<uint64_t> find_syscall_site(pid_t pid);

}  // namespace ferry::pm
