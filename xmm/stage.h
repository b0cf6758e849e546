// Stage: pages of a process that a precopy migration sent ahead to the destination's pager,
// held there until the process is installed and its importer takes them (xmm/precopy.h).
//
// A stage mirrors the source's address ranges in one sparse anonymous mapping: a page at
// source address A lives at the same offset in the mirror, so a later round that sends A again
// overwrites it in place, and memory is held only for pages that arrived. Each page remembers
// the round that sent it: a late or repeated message from an earlier round never overwrites a
// newer copy. The importer installs pages from here (UFFDIO_COPY) and release()s them.
//
// Contract: put() refuses pages outside the ranges and data of the wrong size (nothing is
// stored then). page() is the bytes of a page that arrived, or nullptr. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dipc/status.h"

namespace ferry::xmm {

class Stage {
 public:
  struct Range {
    uint64_t start, end;
  };
  // kUnavailable if the mirror cannot be mapped.
  static Result<std::unique_ptr<Stage>> create(std::vector<Range> ranges);
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // Stores `pages` pages from `address`, sent in `round` (1 .. 254): every page's bytes, in order.
  // A page released before is not taken again.
  Status put(uint32_t round, uint64_t address, uint32_t pages, std::span<const std::byte> data);
  const std::byte* page(uint64_t address) const;
  // Frees the mirror's memory of [address, address + pages) (installed, or no longer wanted).
  void release(uint64_t address, uint32_t pages);

  uint64_t held_pages() const { return held_; }      // pages stored and not released
  uint64_t received_pages() const { return received_; }  // every page put(), repeats included
  uint64_t total_pages() const { return total_; }

 private:
  Stage(std::vector<Range> ranges, std::vector<uint64_t> first, uint64_t total, std::byte* mirror)
      : ranges_(std::move(ranges)), first_(std::move(first)), total_(total), mirror_(mirror), round_(total, 0) {}
  int64_t index(uint64_t address) const;  // page index in the mirror, -1 outside

  std::vector<Range> ranges_;
  std::vector<uint64_t> first_;  // index of each range's first page
  uint64_t total_;
  std::byte* mirror_;
  std::vector<uint8_t> round_;  // per page: the round of the copy held, 0 = none
  uint64_t held_ = 0, received_ = 0;
};

}  // namespace ferry::xmm
