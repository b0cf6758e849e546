// PageTable: where every page of an import stands, in the destination process's addresses,
// and which pages to ask for next. Pure bookkeeping (no I/O), so that fault-around, prefetch
// order and address-space changes can be tested on their own.
//
// A page is kNeed (the source has data for it), kZero (the source never touched it: a zero
// page, installed locally without traffic), kStaged (a precopy sent it ahead: it is in this
// node's stage, xmm/stage.h, and is installed from there without traffic), kInFlight (asked
// for), or kHere (installed, or made moot: the process dropped or unmapped it). The import is
// complete when no page is kNeed, kStaged or kInFlight; kZero pages need nobody once the ranges
// are unregistered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "xmm/lazy_zero.h"

namespace ferry::xmm {

enum class PageState : uint8_t { kNeed = 0, kZero, kInFlight, kHere, kStaged };  // kNeed: zero bytes (LazyZeroVector)

struct PageRun {
  uint64_t address = 0;  // destination address of the first page
  uint64_t source = 0;   // the same page's address in the memory object
  uint32_t pages = 0;
  PageState state = PageState::kNeed;  // every page of the run has this state
};

class PageTable {
 public:
  static constexpr uint64_t kPage = 4096;
  struct Range {
    uint64_t start, end;
  };
  // `ranges` in address order, every page kNeed until apply_presence() says which hold data
  // (an import serves faults before the source has told: a page it asks for comes back with
  // data or as a zero page).
  explicit PageTable(const std::vector<Range>& ranges);
  // Both at once.
  PageTable(const std::vector<Range>& ranges, const std::vector<uint8_t>& present,
            const std::vector<uint8_t>& staged = {});
  // `present`: one bit per page over the ranges in order, LSB first; `staged` (empty: none)
  // likewise: of the present pages, those the stage holds. Pages still kNeed become kZero or
  // kStaged accordingly; pages asked for or installed meanwhile keep their state.
  void apply_presence(const std::vector<uint8_t>& present, const std::vector<uint8_t>& staged = {});
  // The same in steps of at most `max_pages` pages (the caller's loop serves faults between
  // them: for 8 GiB the whole takes ~20 ms); true once every page was seen. The bitmaps must
  // be the same on every call.
  bool apply_presence_step(const std::vector<uint8_t>& present, const std::vector<uint8_t>& staged, uint64_t max_pages);
  bool presence_known() const { return presence_known_; }

  // The page's state; nullopt outside every range (memory the process mapped later: zero).
  std::optional<PageState> state(uint64_t address) const;
  // The run of pages with the same state as `address`'s, starting there, at most `max` long
  // (nullopt outside every range).
  std::optional<PageRun> run_at(uint64_t address, uint32_t max) const;
  // Sets the state of pages [address, address + pages * kPage) that lie in a range.
  void set(uint64_t address, uint32_t pages, PageState state);
  // The process dropped or unmapped [start, end): nothing to fetch there any more.
  void drop(uint64_t start, uint64_t end);
  // The process moved [from, from + length) to `to` (mremap): pages keep their state and their
  // source address.
  void move(uint64_t from, uint64_t to, uint64_t length);

  // The next run of at most `max` kNeed pages to prefetch: the first one at or after `near`
  // (within a bounded look-ahead), else the lowest one. nullopt when none is left.
  std::optional<PageRun> next_needed(uint64_t near, uint32_t max);
  // The lowest run of at most `max` kStaged pages (to install from the stage), or nullopt.
  std::optional<PageRun> next_staged(uint32_t max);

  uint64_t outstanding() const { return need_ + in_flight_ + staged_; }  // pages still to arrive
  uint64_t staged() const { return staged_; }
  uint64_t present_pages() const { return present_; }

 private:
  struct Segment {
    uint64_t start;   // destination address
    uint64_t source;  // address in the memory object
    LazyZeroVector<PageState> pages;  // made at its size, all kNeed, touched as pages change
    size_t cursor = 0;         // no kNeed page below this index
    size_t staged_cursor = 0;  // no kStaged page below this index
    uint64_t end() const { return start + pages.size() * kPage; }
  };
  Segment* find(uint64_t address);
  const Segment* find(uint64_t address) const;
  void count(PageState s, int64_t delta);
  void split_at(uint64_t address);
  void sort();

  std::vector<Segment> segments_;
  uint64_t need_ = 0, in_flight_ = 0, staged_ = 0, present_ = 0;
  bool presence_known_ = false;
  // apply_presence_step's place: the ranges as given (the bits' order, in source addresses),
  // and where it stopped.
  std::vector<Range> original_;
  size_t presence_range_ = 0;
  uint64_t presence_offset_ = 0, presence_bit_ = 0, presence_count_ = 0;
  Segment* find_source(uint64_t source);
};

}  // namespace ferry::xmm
