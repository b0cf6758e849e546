// Step 3 of a migration: build a new process from a ProcessImage, so that it continues as if
// nothing happened, with each of its threads (their tids kept where options.pid is kept:
// set_tid in the job's namespace). The process is rebuilt from the restore stub (pm/stub/) by injected system
// calls: every VMA mapped at its original address (files re-mapped at their offsets),
// the vDSO moved to the source's address, mm fields restored with PR_SET_MM_MAP, files
// reopened at their offsets, cwd, umask, rlimits, signal state, rseq, credentials, registers
// and extended state. A syscall it was blocked in is restarted with its original arguments.
//
// Memory contents come from a PageFeed: (address, bytes) runs in the image's order, as
// FrozenProcess::read_pages and the checkpoint reader produce them.
//
// Lazy variant (options.lazy, what the pager needs): the anonymous VMAs (is_lazy()) are left
// empty and registered with a userfaultfd (MISSING mode) that the restoring process receives
// (take_userfault(), copied out with pidfd_getfd; the restored process holds no descriptor of
// it). The feed is still called first: it must supply what cannot be registered (pages of
// private file mappings that the source had written) and may supply any other page, which is
// then present and never faults. Every other page of a lazy VMA faults until its owner resolves
// it with UFFDIO_COPY or UFFDIO_ZEROPAGE.
//
// On success the caller owns a stopped, fully built process (a child of the calling thread's
// process) and decides when it runs; on failure the half-built process is killed.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dipc/status.h"
#include "dipc/unique_fd.h"
#include "pm/image.capnp.h"
#include "pm/tracee.h"

namespace ferry::pm {

using PageSink = std::function<Status(uint64_t address, std::span<const std::byte> bytes)>;
using PageFeed = std::function<Status(const PageSink& sink)>;

class JobNamespace;

struct RestoreOptions {
  std::filesystem::path stub;  // default: ferry-restore-stub beside the running executable
  // Descriptors of the restoring process that become the restored one's stdin, stdout and
  // stderr when those were pipes, sockets or terminals (-1: /dev/null).
  int stdio[3] = {0, 1, 2};
  bool new_session = false;  // setsid() in the restored process (a detached restore)
  // The restored process gets SIGKILL when the thread that restored it dies (tests: nothing
  // of theirs outlives a test binary killed by a timeout).
  bool die_with_parent = false;
  // Born in this job's namespace (pm/job_namespace.h), with `pid` there; the caller then
  // tells the namespace's init to watch it. The stub enters the job's mount namespace too.
  JobNamespace* job = nullptr;
  // The pid it gets, in the job's namespace (taken there: the build fails), or else in ours if
  // free there (if not, any: stats().pid_kept says which). 0: any.
  pid_t pid = 0;
  // The contents of the image's carried files, by index (pm/carried_files.h); needed when it
  // has any.
  const std::vector<std::vector<std::byte>>* carried = nullptr;
  bool lazy = false;         // the userfaultfd variant (see above)
  uint64_t uffd_features = 0;  // UFFD_FEATURE_* asked with UFFDIO_API (lazy only)
};

// Whether a VMA is left empty and registered in a lazy restore: private anonymous memory
// (heap, stack, anonymous mappings). File mappings cannot be registered (EINVAL) and are
// filled from the feed instead.
bool is_lazy(wire::Vma::Reader vma);

// Pages the kernel writes while the process is rebuilt (its rseq area). A lazy restore's feed
// must supply them, as nobody serves faults before the process runs; build() fails naming the
// page otherwise.
std::vector<uint64_t> pages_written_by_restore(wire::ProcessImage::Reader image);

struct LazyRange {
  uint64_t start = 0, end = 0;
};

// What a pager must serve after a lazy restore: the lazy VMAs without the pages the feed had
// to supply (pages_written_by_restore), in address order.
std::vector<LazyRange> ranges_to_serve(wire::ProcessImage::Reader image);

struct RestoreStats {
  int injected_syscalls = 0;
  uint64_t pages_written = 0;
  uint64_t lazy_pages = 0;  // pages of registered ranges, present or not at the source
  double build_ms = 0;      // from fork of the stub to ready-to-run
  bool pid_kept = false;    // it got the pid that options.pid asked for
  std::vector<std::string> notes;  // what was done otherwise than asked (for the log)
};

class RestoredProcess {
 public:
  // Builds the process; it is stopped and ready when this returns.
  static Result<std::unique_ptr<RestoredProcess>> build(wire::ProcessImage::Reader image, const PageFeed& pages,
                                                        const RestoreOptions& options);
  ~RestoredProcess();  // kills it unless it was started

  pid_t pid() const { return tracee_->pid(); }
  const RestoreStats& stats() const { return stats_; }
  // Lazy restore: the userfaultfd of the restored process (once; later calls give an empty
  // fd) and the ranges registered with it, in address order.
  UniqueFd take_userfault() { return std::move(uffd_); }
  const std::vector<LazyRange>& lazy_ranges() const { return lazy_ranges_; }
  // Lets it run (detaches). It stays a child of this process.
  Status start();

 private:
  explicit RestoredProcess(std::unique_ptr<Tracee> t) : tracee_(std::move(t)) {}
  friend struct ThreadRestorer;
  void kill_all();  // the process and, as their tracer, the end of each thread
  // How each thread is scheduled, set as it starts (the restore pins threads to one CPU).
  struct Scheduling {
    pid_t tid = 0;
    int policy = 0, priority = 0, nice = 0;
    std::vector<std::byte> affinity;  // cpu_set_t, or empty
  };
  std::unique_ptr<Tracee> tracee_;
  std::vector<std::unique_ptr<Tracee>> threads_;  // the others, in image order
  std::vector<Scheduling> scheduling_;
  RestoreStats stats_;
  UniqueFd uffd_;
  std::vector<LazyRange> lazy_ranges_;
  bool started_ = false;
  bool leader_exits_ = false;  // the image's leader had exited: it exits again before the others run
};

}  // namespace ferry::pm
