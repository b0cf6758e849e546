#include "xmm/dirty_tracker.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <string>

#include "pm/pagemap.h"

namespace ferry::xmm {
namespace {

// UFFD features of Linux 6.4+ that Debian 12's headers predate (the kernel's values).
#ifndef UFFD_FEATURE_WP_UNPOPULATED
constexpr uint64_t UFFD_FEATURE_WP_UNPOPULATED = 1u << 13;
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
constexpr uint64_t UFFD_FEATURE_WP_ASYNC = 1u << 15;
#endif

constexpr uint64_t kPage = 4096;

// Written, or in a VMA without asynchronous write-protection (kWpAllowed inverted).
constexpr pm::pagemap::Query kUntrackedOrWritten{.any_of = pm::pagemap::kWritten | pm::pagemap::kWpAllowed,
                                                 .inverted = pm::pagemap::kWpAllowed};

}  // namespace

Result<std::unique_ptr<DirtyTracker>> DirtyTracker::start(pid_t pid, UniqueFd uffd, std::vector<Range> ranges) {
  const std::string who = "dirty tracking of pid " + std::to_string(pid);
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.start < b.start; });
  for (const auto& r : ranges)
    if (r.start >= r.end || r.start % kPage || r.end % kPage)
      return make_error(ErrorCode::kInvalid, who + ": a range is empty or not page-aligned");
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message(who + ": UFFDIO_API (asynchronous write-protect)", errno));
  for (const auto& r : ranges) {
    uffdio_register reg{};
    reg.range = {r.start, r.end - r.start};
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) != 0)
      return make_error(ErrorCode::kUnavailable, errno_message(who + ": UFFDIO_REGISTER of a range", errno));
    uffdio_writeprotect wp{};
    wp.range = {r.start, r.end - r.start};
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    if (::ioctl(uffd.get(), UFFDIO_WRITEPROTECT, &wp) != 0)
      return make_error(ErrorCode::kUnavailable, errno_message(who + ": UFFDIO_WRITEPROTECT", errno));
  }
  UniqueFd pagemap(::open(("/proc/" + std::to_string(pid) + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap) return make_error(ErrorCode::kNotFound, errno_message(who + ": open /proc/PID/pagemap", errno));
  return std::unique_ptr<DirtyTracker>(new DirtyTracker(pid, std::move(uffd), std::move(pagemap), std::move(ranges)));
}

DirtyTracker::~DirtyTracker() {
  for (const auto& r : ranges_) {
    uffdio_range range{r.start, r.end - r.start};
    (void)::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range);  // fails harmlessly on what was unmapped
  }
}

Status DirtyTracker::scan(uint64_t start, uint64_t end, const pm::pagemap::Query& q, std::vector<Range>& out) {
  auto found = pm::pagemap::scan(pagemap_.get(), start, end, q);
  if (!found) return make_error(ErrorCode::kUnavailable, "pid " + std::to_string(pid_) + ": " + found.error().message);
  for (const auto& f : found.value()) out.push_back({f.start, f.end});
  return Status::Ok();
}

Result<std::vector<DirtyTracker::Range>> DirtyTracker::scan(const pm::pagemap::Query& q) {
  std::vector<Range> out;
  for (const auto& r : ranges_)
    if (Status s = scan(r.start, r.end, q, out); !s) return s.error();
  return out;
}

Result<std::vector<DirtyTracker::Range>> DirtyTracker::present() {
  // Not kSwapped: the markers WP_UNPOPULATED leaves on never-touched pages count as swap
  // entries. A page really swapped out follows lazily (the export finds it).
  return scan({.any_of = pm::pagemap::kPresent});
}

Result<std::vector<DirtyTracker::Range>> DirtyTracker::take_written() {
  return scan({.any_of = pm::pagemap::kWritten, .write_protect = true});
}

Result<std::vector<DirtyTracker::Range>> DirtyTracker::untracked_or_written(uint64_t start, uint64_t end) {
  std::vector<Range> out;
  if (Status s = scan(start, end, kUntrackedOrWritten, out); !s) return s.error();
  return out;
}

Result<std::vector<DirtyTracker::Range>> DirtyTracker::untracked_or_written() { return scan(kUntrackedOrWritten); }

}  // namespace ferry::xmm
