// Userfault: the controlling side of a restored process's userfaultfd (see pm/restore.h, lazy
// variant). Reads fault and address-space events without blocking and resolves faults with
// UFFDIO_COPY / UFFDIO_ZEROPAGE, which wake the faulting threads.
//
// Contract:
// - The fd is non-blocking; read_events() returns what is queued now (possibly nothing).
// - copy()/zero() on a range that is already present succeed (kAlreadyPresent counted, not an
//   error: a concurrent fault or a prefetch got there first). A range the process no longer
//   maps (munmap, exit) gives kGone. While the kernel reports an address-space change that
//   was not read yet (EAGAIN), kRetry: read the events first, then try again.
// - Not thread-safe; one owner (the pager's event loop).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include "dipc/status.h"
#include "dipc/unique_fd.h"

namespace ferry::xmm {

struct UserfaultEvent {
  enum class Kind { kPageFault, kRemove, kUnmap, kRemap, kFork, kOther };
  Kind kind = Kind::kOther;
  uint64_t address = 0;  // fault: the page's address; remove/unmap: start; remap: old start
  uint64_t end = 0;      // remove/unmap: end
  uint64_t to = 0;       // remap: new start
  uint64_t length = 0;   // remap: length
  bool write = false;    // fault: a write access
  pid_t thread = 0;      // fault: the faulting thread (UFFD_FEATURE_THREAD_ID)
  int fork_fd = -1;      // fork: the child's userfaultfd (now ours to close)
};

enum class Resolve { kDone, kAlreadyPresent, kGone, kRetry };

class Userfault {
 public:
  explicit Userfault(UniqueFd fd) : fd_(std::move(fd)) {}

  int fd() const { return fd_.get(); }
  // Appends every queued event to `out`; kUnavailable if the descriptor failed.
  Status read_events(std::vector<UserfaultEvent>& out);
  // Installs `bytes` (whole pages) at `address` and wakes threads waiting on them. `present`,
  // if given, receives how many of the pages were there already.
  Result<Resolve> copy(uint64_t address, std::span<const std::byte> bytes, uint64_t* present = nullptr);
  // Installs zero pages over [address, address + length) and wakes waiting threads.
  Result<Resolve> zero(uint64_t address, uint64_t length);
  // Wakes threads waiting on a range another call made present.
  Status wake(uint64_t address, uint64_t length);
  // Unregisters [start, end): later faults there are the kernel's (zero pages), not ours.
  Status unregister(uint64_t start, uint64_t end);
  // Whether the process's address space still exists (it has not exited).
  bool target_alive();

 private:
  UniqueFd fd_;
};

}  // namespace ferry::xmm
