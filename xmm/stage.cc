#include "xmm/stage.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

namespace ferry::xmm {
namespace {
constexpr uint64_t kPage = 4096;
constexpr uint8_t kReleased = 255;  // a page's round once released: nothing more is taken for it
}

Result<std::unique_ptr<Stage>> Stage::create(std::vector<Range> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.start < b.start; });
  std::vector<uint64_t> first;
  uint64_t total = 0;
  for (const auto& r : ranges) {
    if (r.start >= r.end || r.start % kPage || r.end % kPage)
      return make_error(ErrorCode::kInvalid, "stage: a range is empty or not page-aligned");
    if (!first.empty() && r.start < ranges[first.size() - 1].end)
      return make_error(ErrorCode::kInvalid, "stage: ranges overlap");
    first.push_back(total);
    total += (r.end - r.start) / kPage;
  }
  if (total == 0) return make_error(ErrorCode::kInvalid, "stage: no pages");
  void* m = ::mmap(nullptr, total * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED)
    return make_error(ErrorCode::kUnavailable, errno_message("stage: mapping " + std::to_string(total * kPage) + " bytes", errno));
  return std::unique_ptr<Stage>(new Stage(std::move(ranges), std::move(first), total, static_cast<std::byte*>(m)));
}

Stage::~Stage() { ::munmap(mirror_, total_ * kPage); }

int64_t Stage::index(uint64_t address) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), address, [](uint64_t a, const Range& r) { return a < r.start; });
  if (it == ranges_.begin()) return -1;
  size_t i = size_t(it - ranges_.begin()) - 1;
  if (address >= ranges_[i].end) return -1;
  return int64_t(first_[i] + (address - ranges_[i].start) / kPage);
}

Status Stage::put(uint32_t round, uint64_t address, uint32_t pages, std::span<const std::byte> data) {
  if (round == 0 || round >= kReleased) return make_error(ErrorCode::kInvalid, "stage: round out of range");
  if (pages == 0 || address % kPage || data.size() != uint64_t(pages) * kPage)
    return make_error(ErrorCode::kInvalid, "stage: pages of the wrong size or alignment");
  int64_t first = index(address);
  if (first < 0 || index(address + (uint64_t(pages) - 1) * kPage) != first + pages - 1)
    return make_error(ErrorCode::kInvalid, "stage: pages outside its ranges");
  for (uint32_t i = 0; i < pages; ++i) {
    uint64_t k = uint64_t(first) + i;
    ++received_;
    if (round_[k] > round) continue;  // a newer copy is here already (or it was released)
    if (round_[k] == 0) ++held_;
    round_[k] = uint8_t(round);
    std::memcpy(mirror_ + k * kPage, data.data() + size_t(i) * kPage, kPage);
  }
  return Status::Ok();
}

const std::byte* Stage::page(uint64_t address) const {
  int64_t k = index(address & ~(kPage - 1));
  if (k < 0 || round_[uint64_t(k)] == 0 || round_[uint64_t(k)] == kReleased) return nullptr;
  return mirror_ + uint64_t(k) * kPage;
}

void Stage::release(uint64_t address, uint32_t pages) {
  int64_t first = index(address);
  if (first < 0 || pages == 0) return;
  uint32_t n = 0;
  for (; n < pages && first + n < int64_t(total_) && index(address + uint64_t(n) * kPage) == first + n; ++n) {
    uint64_t k = uint64_t(first) + n;
    if (round_[k] != 0 && round_[k] != kReleased) --held_;
    round_[k] = kReleased;
  }
  ::madvise(mirror_ + uint64_t(first) * kPage, uint64_t(n) * kPage, MADV_DONTNEED);
}

}  // namespace ferry::xmm
