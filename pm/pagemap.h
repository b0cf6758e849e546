// Which pages of a process hold what, from /proc/PID/pagemap's PAGEMAP_SCAN ioctl (Linux 6.7+):
// the kernel walks the page tables and answers with ranges, instead of 8 bytes per page to read
// and decode. For a 4 GiB process that is the difference between tens of milliseconds and one,
// and the migration's freeze pays for it (docs/MIGRATION.md, "Downtime").
//
// Debian 12's kernel headers predate the ioctl: its ABI is spelled out in pagemap.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "dipc/status.h"

namespace ferry::pm::pagemap {

// Page categories (include/uapi/linux/fs.h).
inline constexpr uint64_t kWpAllowed = 1u << 0;  // in a VMA with asynchronous uffd write-protection
inline constexpr uint64_t kWritten = 1u << 1;    // not write-protected (written since protected)
inline constexpr uint64_t kFile = 1u << 2;       // a page of a file (not an anonymous copy)
inline constexpr uint64_t kPresent = 1u << 3;
inline constexpr uint64_t kSwapped = 1u << 4;

struct Query {
  uint64_t any_of = 0;    // a page matches if it has any of these categories...
  uint64_t all_of = 0;    // ...and all of these...
  uint64_t inverted = 0;  // ...with these categories' meaning inverted (absent instead of present)
  bool write_protect = false;  // write-protect the matching pages again (PM_SCAN_WP_MATCHING)
};

struct Range {
  uint64_t start, end;  // [start, end), page-aligned
};

// The ranges of [start, end) whose pages match `q`, in address order, adjacent ones merged.
// kUnavailable (naming the errno) if the kernel refuses.
Result<std::vector<Range>> scan(int pagemap_fd, uint64_t start, uint64_t end, const Query& q);

// The pages that hold content of their own: in anonymous memory every page present or swapped;
// in a private file mapping only those (present or swapped) that are not the file's own page,
// i.e. the process's copies of what it wrote.
Result<std::vector<Range>> pages_with_content(int pagemap_fd, uint64_t start, uint64_t end, bool anonymous);

// The pages of a shmem mapping of `pid` (MAP_SHARED anonymous memory, a memfd, a tmpfs file)
// whose page in the shmem object holds data, mapped in the process or not (after
// MADV_DONTNEED a page is no longer in the page tables but keeps its data): from the object's
// SEEK_DATA / SEEK_HOLE through /proc/PID/map_files. [start, end) lies within the mapping
// [vma_start, vma_end) of file offset `vma_offset`.
Result<std::vector<Range>> shmem_with_data(int pid, uint64_t vma_start, uint64_t vma_end, uint64_t vma_offset,
                                           uint64_t start, uint64_t end);

// Sets bits [first, first + count) of an LSB-first bitmap.
void set_bits(uint8_t* bits, uint64_t first, uint64_t count);

}  // namespace ferry::pm::pagemap
