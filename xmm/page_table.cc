#include "xmm/page_table.h"

#include <algorithm>

namespace ferry::xmm {
namespace {
constexpr size_t kLookAhead = 4096;  // pages scanned after a fault before falling back
}

PageTable::PageTable(const std::vector<Range>& ranges) : original_(ranges) {
  for (const auto& r : ranges) {
    Segment s{r.start, r.start, LazyZeroVector<PageState>((r.end - r.start) / kPage), 0, 0};  // every page kNeed
    need_ += s.pages.size();
    segments_.push_back(std::move(s));
  }
  present_ = need_;  // as far as anyone knows yet
  sort();
}

PageTable::PageTable(const std::vector<Range>& ranges, const std::vector<uint8_t>& present,
                     const std::vector<uint8_t>& staged)
    : PageTable(ranges) {
  apply_presence(present, staged);
}

void PageTable::apply_presence(const std::vector<uint8_t>& present, const std::vector<uint8_t>& staged) {
  while (!apply_presence_step(present, staged, ~0ull)) {
  }
}

PageTable::Segment* PageTable::find_source(uint64_t source) {
  for (auto& s : segments_)
    if (source >= s.source && source < s.source + s.pages.size() * kPage) return &s;
  return nullptr;
}

bool PageTable::apply_presence_step(const std::vector<uint8_t>& present, const std::vector<uint8_t>& staged,
                                    uint64_t max_pages) {
  if (presence_known_) return true;
  auto bit_of = [](const std::vector<uint8_t>& v, uint64_t bit) { return bit / 8 < v.size() && ((v[bit / 8] >> (bit % 8)) & 1); };
  uint64_t done = 0;
  // Bits run over the ranges as given, page after page, in source addresses: a remap moves a
  // segment's destination (and may split it), never a page's source.
  while (presence_range_ < original_.size() && done < max_pages) {
    const Range& r = original_[presence_range_];
    uint64_t src = r.start + presence_offset_ * kPage;
    if (src >= r.end) {
      ++presence_range_;
      presence_offset_ = 0;
      continue;
    }
    Segment* seg = find_source(src);
    if (!seg) {  // cannot happen (segments are never removed); skip the page
      ++presence_offset_, ++presence_bit_, ++done;
      continue;
    }
    uint64_t limit = std::min<uint64_t>(r.end, seg->source + seg->pages.size() * kPage);
    for (size_t i = (src - seg->source) / kPage; seg->source + i * kPage < limit && done < max_pages;
         ++i, ++done, ++presence_offset_, ++presence_bit_) {
      bool has = bit_of(present, presence_bit_);
      presence_count_ += has;
      if (seg->pages[i] != PageState::kNeed) continue;
      if (!has) {
        seg->pages[i] = PageState::kZero;
        --need_;
      } else if (bit_of(staged, presence_bit_)) {
        seg->pages[i] = PageState::kStaged;
        --need_;
        ++staged_;
      }
    }
    seg->cursor = 0;
    seg->staged_cursor = 0;
  }
  if (presence_range_ < original_.size()) return false;
  present_ = presence_count_;
  presence_known_ = true;
  return true;
}

void PageTable::sort() {
  std::sort(segments_.begin(), segments_.end(), [](const Segment& a, const Segment& b) { return a.start < b.start; });
}

PageTable::Segment* PageTable::find(uint64_t a) {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), a,
                             [](uint64_t x, const Segment& s) { return x < s.start; });
  if (it == segments_.begin()) return nullptr;
  --it;
  return a < it->end() ? &*it : nullptr;
}

const PageTable::Segment* PageTable::find(uint64_t a) const { return const_cast<PageTable*>(this)->find(a); }

void PageTable::count(PageState s, int64_t delta) {
  if (s == PageState::kNeed) need_ = uint64_t(int64_t(need_) + delta);
  if (s == PageState::kInFlight) in_flight_ = uint64_t(int64_t(in_flight_) + delta);
  if (s == PageState::kStaged) staged_ = uint64_t(int64_t(staged_) + delta);
}

std::optional<PageState> PageTable::state(uint64_t a) const {
  const Segment* s = find(a);
  if (!s) return std::nullopt;
  return s->pages[(a - s->start) / kPage];
}

std::optional<PageRun> PageTable::run_at(uint64_t a, uint32_t max) const {
  const Segment* s = find(a);
  if (!s) return std::nullopt;
  size_t i = (a - s->start) / kPage;
  PageState st = s->pages[i];
  size_t n = 1;
  while (n < max && i + n < s->pages.size() && s->pages[i + n] == st) ++n;
  return PageRun{s->start + i * kPage, s->source + i * kPage, uint32_t(n), st};
}

void PageTable::set(uint64_t a, uint32_t pages, PageState st) {
  for (uint32_t k = 0; k < pages; ++k, a += kPage) {
    Segment* s = find(a);
    if (!s) continue;
    size_t i = (a - s->start) / kPage;
    count(s->pages[i], -1);
    s->pages[i] = st;
    count(st, +1);
    if (st == PageState::kNeed) s->cursor = std::min(s->cursor, i);
    if (st == PageState::kStaged) s->staged_cursor = std::min(s->staged_cursor, i);
  }
}

void PageTable::drop(uint64_t start, uint64_t end) {
  for (uint64_t a = start & ~(kPage - 1); a < end; a += kPage) {
    Segment* s = find(a);
    if (!s) continue;
    size_t i = (a - s->start) / kPage;
    count(s->pages[i], -1);
    s->pages[i] = PageState::kHere;
  }
}

void PageTable::split_at(uint64_t a) {
  Segment* s = find(a);
  if (!s || s->start == a) return;
  size_t i = (a - s->start) / kPage;
  Segment tail{a, s->source + i * kPage, LazyZeroVector<PageState>(s->pages.begin() + long(i), s->pages.end()), 0, 0};
  s->pages.resize(i);
  s->cursor = std::min(s->cursor, i);
  s->staged_cursor = std::min(s->staged_cursor, i);
  segments_.push_back(std::move(tail));
  sort();
}

void PageTable::move(uint64_t from, uint64_t to, uint64_t length) {
  drop(to, to + length);  // whatever was mapped there is gone
  split_at(from);
  split_at(from + length);
  for (auto& s : segments_)
    if (s.start >= from && s.end() <= from + length) s.start = to + (s.start - from);
  sort();
}

std::optional<PageRun> PageTable::next_needed(uint64_t near, uint32_t max) {
  if (need_ == 0) return std::nullopt;
  auto run_from = [&](Segment& s, size_t i) {
    size_t n = 1;
    while (n < max && i + n < s.pages.size() && s.pages[i + n] == PageState::kNeed) ++n;
    return PageRun{s.start + i * kPage, s.source + i * kPage, uint32_t(n), PageState::kNeed};
  };
  if (Segment* s = find(near)) {
    size_t i = (near - s->start) / kPage;
    for (size_t k = 0; k < kLookAhead && i + k < s->pages.size(); ++k)
      if (s->pages[i + k] == PageState::kNeed) return run_from(*s, i + k);
  }
  for (auto& s : segments_) {
    while (s.cursor < s.pages.size() && s.pages[s.cursor] != PageState::kNeed) ++s.cursor;
    if (s.cursor < s.pages.size()) return run_from(s, s.cursor);
  }
  return std::nullopt;
}

std::optional<PageRun> PageTable::next_staged(uint32_t max) {
  if (staged_ == 0) return std::nullopt;
  for (auto& s : segments_) {
    while (s.staged_cursor < s.pages.size() && s.pages[s.staged_cursor] != PageState::kStaged) ++s.staged_cursor;
    if (s.staged_cursor == s.pages.size()) continue;
    size_t i = s.staged_cursor, n = 1;
    while (n < max && i + n < s.pages.size() && s.pages[i + n] == PageState::kStaged) ++n;
    return PageRun{s.start + i * kPage, s.source + i * kPage, uint32_t(n), PageState::kStaged};
  }
  return std::nullopt;
}

}  // namespace ferry::xmm
