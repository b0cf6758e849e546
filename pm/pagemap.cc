#include "pm/pagemap.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include <cstring>

namespace ferry::pm::pagemap {
namespace {

struct PageRegion {
  uint64_t start, end, categories;
};
struct ScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, ScanArg);
constexpr uint64_t kWpMatching = 1u << 0;

}  // namespace

Result<std::vector<Range>> scan(int fd, uint64_t start, uint64_t end, const Query& q) {
  std::vector<Range> out;
  std::vector<PageRegion> regions(4096);
  for (uint64_t at = start; at < end;) {
    ScanArg arg{};
    arg.size = sizeof arg;
    arg.flags = q.write_protect ? kWpMatching : 0;
    arg.start = at;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    arg.category_inverted = q.inverted;
    arg.category_mask = q.all_of;
    arg.category_anyof_mask = q.any_of;
    arg.return_mask = q.any_of | q.all_of;
    long n = ::ioctl(fd, kPagemapScan, &arg);
    if (n < 0) return make_error(ErrorCode::kUnavailable, errno_message("PAGEMAP_SCAN", errno));
    for (long i = 0; i < n; ++i) {
      const PageRegion& r = regions[size_t(i)];
      if (!out.empty() && out.back().end == r.start)
        out.back().end = r.end;
      else
        out.push_back({r.start, r.end});
    }
    if (arg.walk_end <= at) break;  // the kernel made no progress (cannot happen; guards a loop)
    at = arg.walk_end;
  }
  return out;
}

Result<std::vector<Range>> pages_with_content(int fd, uint64_t start, uint64_t end, bool anonymous) {
  Query q;
  q.any_of = kPresent | kSwapped;
  if (!anonymous) {
    q.all_of = kFile;
    q.inverted = kFile;  // "all of: not a page of the file"
  }
  return scan(fd, start, end, q);
}

Result<std::vector<Range>> shmem_with_data(int pid, uint64_t vma_start, uint64_t vma_end, uint64_t vma_offset,
                                           uint64_t start, uint64_t end) {
  char path[96];
  std::snprintf(path, sizeof path, "/proc/%d/map_files/%lx-%lx", pid, (unsigned long)vma_start, (unsigned long)vma_end);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(ErrorCode::kUnavailable, errno_message(std::string("open ") + path, errno));
  std::vector<Range> out;
  const uint64_t page = 4096;
  off_t at = off_t(vma_offset + (start - vma_start)), stop = off_t(vma_offset + (end - vma_start));
  while (at < stop) {
    off_t data = ::lseek(fd, at, SEEK_DATA);
    if (data < 0 || data >= stop) break;  // ENXIO: no data from here on
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0 || hole > stop) hole = stop;
    uint64_t s = vma_start + (uint64_t(data) - vma_offset) / page * page;
    uint64_t e = vma_start + (uint64_t(hole) - vma_offset + page - 1) / page * page;
    out.push_back({s, std::min(e, end)});
    at = hole;
  }
  ::close(fd);
  return out;
}

void set_bits(uint8_t* bits, uint64_t first, uint64_t count) {
  uint64_t i = first, stop = first + count;
  for (; i < stop && i % 8; ++i) bits[i / 8] |= uint8_t(1u << (i % 8));
  if (i < stop && stop - i >= 8) {
    std::memset(bits + i / 8, 0xff, (stop - i) / 8);
    i += (stop - i) / 8 * 8;
  }
  for (; i < stop; ++i) bits[i / 8] |= uint8_t(1u << (i % 8));
}

}  // namespace ferry::pm::pagemap
