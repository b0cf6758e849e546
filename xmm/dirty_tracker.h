// DirtyTracker: which pages of a running process were written since we last looked, for a
// precopy migration (xmm/precopy.h). Built on userfaultfd write-protection in asynchronous mode
// (UFFD_FEATURE_WP_ASYNC: the kernel resolves the write faults itself, the process never waits
// for us) with markers on never-touched pages (WP_UNPOPULATED), read and re-armed in one call
// with the PAGEMAP_SCAN ioctl on /proc/PID/pagemap. Soft-dirty does not work on these kernels
// (docs/KERNEL-FACTS in shared/: the kernel is built without it).
//
// Contract:
// - start() takes a userfaultfd created *in the process* (only its mm can be tracked; the agent
//   injects the userfaultfd() call) and copied to us, registers the ranges for write-protection
//   and protects every page. From then on a write to any page of the ranges is recorded.
// - present() lists the pages in memory now (the first round's set; swapped-out pages are not
//   in it, they follow lazily).
// - take_written() lists the pages written since start() or the previous take_written(), and
//   protects them again atomically with the listing: a write during or after the call shows in
//   the next one. A page zapped by the process (madvise DONTNEED) counts as written.
// - untracked_or_written() (once the process is frozen) lists the pages written since the last
//   take_written() *and* every page of a VMA that is no longer tracked (mapped over, mremap'ed
//   or newly mapped): a page outside that list holds what it held at the last take_written().
// - Destruction unregisters the ranges and closes the descriptor: the process runs on as
//   before (the kernel drops the protection).
// - Not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "dipc/status.h"
#include "dipc/unique_fd.h"
#include "pm/pagemap.h"

namespace ferry::xmm {

class DirtyTracker {
 public:
  struct Range {
    uint64_t start, end;  // page-aligned, [start, end)
  };

  static Result<std::unique_ptr<DirtyTracker>> start(pid_t pid, UniqueFd uffd, std::vector<Range> ranges);
  ~DirtyTracker();
  DirtyTracker(const DirtyTracker&) = delete;
  DirtyTracker& operator=(const DirtyTracker&) = delete;

  const std::vector<Range>& ranges() const { return ranges_; }
  Result<std::vector<Range>> present();
  Result<std::vector<Range>> take_written();
  Result<std::vector<Range>> untracked_or_written();
  // The same over [start, end) only (to be done in steps).
  Result<std::vector<Range>> untracked_or_written(uint64_t start, uint64_t end);

 private:
  DirtyTracker(pid_t pid, UniqueFd uffd, UniqueFd pagemap, std::vector<Range> ranges)
      : pid_(pid), uffd_(std::move(uffd)), pagemap_(std::move(pagemap)), ranges_(std::move(ranges)) {}
  // PAGEMAP_SCAN over every range: the pages that match, in address order.
  Result<std::vector<Range>> scan(const pm::pagemap::Query& q);  // over every tracked range
  Status scan(uint64_t start, uint64_t end, const pm::pagemap::Query& q, std::vector<Range>& out);

  pid_t pid_;
  UniqueFd uffd_, pagemap_;
  std::vector<Range> ranges_;
};

}  // namespace ferry::xmm
