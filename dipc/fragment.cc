#include "dipc/fragment.h"

#include <cstring>

namespace ferry::dipc {

void write_fragment_header(const FragmentHeader& h, std::byte* out) {
  uint32_t words[4] = {kFragmentMagic, h.index, h.count, h.total};
  std::memcpy(out, words, 16);
  std::memcpy(out + 16, &h.sender, 8);
  std::memcpy(out + 24, &h.message, 8);
}

std::optional<FragmentHeader> read_fragment_header(std::span<const std::byte> fragment) {
  if (fragment.size() < kFragmentHeaderBytes) return std::nullopt;
  uint32_t words[4];
  std::memcpy(words, fragment.data(), 16);
  if (words[0] != kFragmentMagic) return std::nullopt;
  FragmentHeader h;
  h.index = words[1];
  h.count = words[2];
  h.total = words[3];
  std::memcpy(&h.sender, fragment.data() + 16, 8);
  std::memcpy(&h.message, fragment.data() + 24, 8);
  return h;
}

uint32_t fragment_count(size_t total, size_t payload) {
  return total == 0 ? 1 : uint32_t((total + payload - 1) / payload);
}

Reassembler::Reassembler(size_t max_message, size_t payload, size_t memory_cap, std::chrono::milliseconds timeout)
    : max_message_(max_message), payload_(payload), memory_cap_(memory_cap), timeout_(timeout) {}

Reassembler::Buffer Reassembler::take_buffer(size_t size) {
  for (auto it = spare_.begin(); it != spare_.end(); ++it)
    if (it->capacity >= size) {
      Buffer b = std::move(*it);
      spare_.erase(it);
      b.size = size;
      return b;
    }
  Buffer b;
  b.data.reset(new std::byte[size]);
  b.size = b.capacity = size;
  return b;
}

void Reassembler::give_back(Buffer b) {
  constexpr size_t kSpares = 4;
  if (!b.data) return;
  if (spare_.size() >= kSpares) spare_.erase(spare_.begin());  // the oldest goes
  spare_.push_back(std::move(b));
}

void Reassembler::drop(std::map<Key, Partial>::iterator it) {
  held_bytes_ -= it->second.bytes.size;
  give_back(std::move(it->second.bytes));
  partial_.erase(it);
}

Reassembler::Outcome Reassembler::add(std::span<const std::byte> fragment, Clock::time_point now,
                                      std::span<const std::byte>* whole) {
  auto h = read_fragment_header(fragment);
  std::span<const std::byte> slice = fragment.subspan(std::min(fragment.size(), kFragmentHeaderBytes));
  // The header must agree with itself: the count is what the total needs, the index is in range,
  // and the slice is exactly as long as its place in the message says.
  if (!h || h->total > max_message_ || h->count != fragment_count(h->total, payload_) || h->index >= h->count) {
    ++refused_;
    return Outcome::kRefused;
  }
  size_t offset = size_t(h->index) * payload_;
  size_t expected = std::min(payload_, size_t(h->total) - std::min(size_t(h->total), offset));
  if (slice.size() != expected) {
    ++refused_;
    return Outcome::kRefused;
  }
  give_back(std::move(last_whole_));
  last_whole_ = {};
  if (h->count == 1) {
    *whole = slice;
    return Outcome::kWhole;
  }
  Key key{h->sender, h->message};
  auto it = partial_.find(key);
  if (it == partial_.end()) {
    if (held_bytes_ + h->total > memory_cap_) {
      ++refused_;
      return Outcome::kRefused;
    }
    Partial p;
    p.bytes = take_buffer(h->total);
    p.have.assign(h->count, false);
    p.missing = h->count;
    p.started = now;
    held_bytes_ += h->total;
    it = partial_.emplace(key, std::move(p)).first;
  }
  Partial& p = it->second;
  if (p.bytes.size != h->total || p.have.size() != h->count || p.have[h->index]) {
    ++refused_;  // another message under the same number, or a fragment seen twice
    return Outcome::kRefused;
  }
  std::memcpy(p.bytes.data.get() + offset, slice.data(), slice.size());
  p.have[h->index] = true;
  if (--p.missing > 0) return Outcome::kPartial;
  last_whole_ = std::move(p.bytes);
  held_bytes_ -= last_whole_.size;
  partial_.erase(it);
  *whole = std::span<const std::byte>(last_whole_.data.get(), last_whole_.size);
  return Outcome::kWhole;
}

size_t Reassembler::expire(Clock::time_point now) {
  size_t n = 0;
  for (auto it = partial_.begin(); it != partial_.end();) {
    auto next = std::next(it);
    if (now - it->second.started > timeout_) {
      drop(it);
      ++abandoned_;
      ++n;
    }
    it = next;
  }
  return n;
}

}  // namespace ferry::dipc
