// Steps 1 and 2 of a migration: freeze a process and capture its state into a ProcessImage
// (pm/image.capnp). Memory contents are not in the image: the frozen process keeps them, and
// read_pages() (or, later, the pager) hands them out.
//
// Every thread is frozen and captured (registers, extended state, signal mask and pending
// signals, rseq, alternate stack, robust list, clear_child_tid, name, scheduling): none runs
// while another is captured.
//
// A process that holds something this release cannot move is refused with an error that
// names it ("fd 5 is a TCP socket", "mapping 7f1c2e000000-7f1c2e021000 is MAP_SHARED") and
// left running as it was.
//
// Thread-safety: a FrozenProcess is used from the thread that froze it (ptrace's rule).
#pragma once

#include <capnp/message.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "dipc/status.h"
#include "pm/image.capnp.h"
#include "pm/tracee.h"

namespace ferry::pm {

struct CaptureOptions {
  // Which pages of the memory that moves lazily (anonymous, heap, stack) hold data. A checkpoint
  // needs it; a migration does not (its pager finds out after the freeze, off the job's
  // downtime: walking the page tables of a 4 GiB process takes ~25 ms here).
  bool lazy_presence = true;
};

class FrozenProcess {
 public:
  // Stops every thread of `pid` where it is (step 1), threads created meanwhile included (it
  // looks again until it finds none it has not stopped; kRefused if threads keep coming faster
  // than that, after a bounded number of looks). kNotFound for an unknown pid.
  static Result<std::unique_ptr<FrozenProcess>> freeze(pid_t pid);
  // Resumes the process unless kill() was called.
  ~FrozenProcess();

  pid_t pid() const { return tgid_; }
  // Its thread-group leader has called pthread_exit while other threads run (a zombie that
  // ptrace cannot attach to): the capture goes through its first live thread, the image says
  // so, and the restore rebuilds the leader only to have it exit again as the process starts.
  bool leader_exited() const { return leader_exited_; }

  // Captures the state (step 2) into `image`; kRefused names what cannot move. After a
  // refusal the process is still frozen: destroy this object to let it run on, untouched.
  Status capture(wire::ProcessImage::Builder image, const CaptureOptions& options = {});

  // Calls `sink(address, bytes)` for each run of pages the image marks present, in address
  // order, in chunks of at most `chunk` bytes.
  // With `only`, just the VMAs it accepts.
  Status read_pages(wire::ProcessImage::Reader image,
                    const std::function<Status(uint64_t, std::span<const std::byte>)>& sink,
                    size_t chunk = 1 << 20, const std::function<bool(wire::Vma::Reader)>& only = nullptr);

  // For a lazy migration: the pages that go with the state (pm/restore.h): the written pages of
  // the VMAs that cannot be registered, and the pages the restore itself writes.
  Status read_eager_pages(wire::ProcessImage::Reader image,
                          const std::function<Status(uint64_t, std::span<const std::byte>)>& sink);

  // Resumes it now (same as destruction, reporting failure).
  Status resume();
  // Ends it: after a checkpoint, or once a migration has committed elsewhere.
  void kill();
  // Once a migration has committed elsewhere and its memory is still to be served: makes the
  // process a memory shell that can never run the program again (its registers now point at
  // exit_group) and leaves it stopped and untraced, for the pager to take (xmm/exporter.h).
  // This object is inert afterwards.
  Status hand_over();

  // The thread the capture works through, whose /proc entries show the process's memory and
  // files: the leader, or its first live thread when the leader has exited.
  Tracee& tracee() { return *tracee_; }
  size_t thread_count() const { return 1 + threads_.size(); }

 private:
  FrozenProcess(std::unique_ptr<Tracee> t, pid_t tgid, bool leader_exited)
      : tracee_(std::move(t)), tgid_(tgid), leader_exited_(leader_exited) {}
  Status freeze_threads(const std::vector<pid_t>& checked);  // `checked`: tids seen not stuck, ascending
  std::unique_ptr<Tracee> tracee_;
  std::vector<std::unique_ptr<Tracee>> threads_;  // the others, in tid order
  pid_t tgid_;
  bool leader_exited_;
};

}  // namespace ferry::pm
