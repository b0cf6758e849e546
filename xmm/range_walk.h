// RangeWalk: a walk over address ranges (anything with .start and .end, page-aligned, in
// order) in slices of at most N pages, resumable across calls, for work that a daemon's loop
// does a slice per turn (the exporter's presence walk, the precopy's last look).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace ferry::xmm {

struct RangeWalk {
  static constexpr uint64_t kPage = 4096;
  struct Slice {
    size_t range;  // index of the range the slice lies in
    uint64_t from, to;
    uint64_t pages() const { return (to - from) / kPage; }
  };

  size_t range = 0;  // the range being walked, and where in it
  uint64_t at = 0;

  bool started() const { return range != 0 || at != 0; }
  template <typename Ranges>
  bool done(const Ranges& ranges) const {
    return range >= ranges.size();
  }
  // The next slice, at most `max_pages` long, and moves past it. Precondition: !done(ranges).
  template <typename Ranges>
  Slice next(const Ranges& ranges, uint64_t max_pages) {
    const auto& r = ranges[range];
    Slice s{range, std::max<uint64_t>(r.start, at), 0};
    s.to = std::min<uint64_t>(r.end, s.from + max_pages * kPage);
    at = s.to;
    if (s.to >= r.end) ++range, at = 0;
    return s;
  }
};

}  // namespace ferry::xmm
