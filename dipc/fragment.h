// Fragments: how FabricEndpoint carries a message of any size (up to its max_message) in
// provider messages that each fit the provider's eager limit. Internal to dipc/.
//
// Why: rxm (libfabric 1.17) sends a message above its eager limit (16 KiB less its header) by
// segmentation or rendezvous, and a peer that dies while such messages to it are in flight can
// wedge the sender's whole endpoint (it spins and answers nobody again): measured with the
// PortRestart test, after 3-8 peers killed mid-transfer. Eager messages never did. So every
// provider message is a fragment no larger than the eager limit, and the receiver rebuilds the
// message. The fragments of one message are told apart from others' by the sender's random
// endpoint token and the sender's message number, so fragments of concurrent messages from many
// peers, or of a message cut short by its sender's death, never mix.
//
// A fragment is a 32-byte header (host byte order: the cluster is one architecture) and a slice:
//   magic u32 "FRG1" | index u32 | count u32 | total u32 | sender u64 | message u64 | bytes...
// Every fragment but the last carries exactly `payload` bytes (the endpoint's fragment payload).
// The message is authenticated as a whole by the port once rebuilt, so a forged fragment can
// spoil a message (as dropping it could) but never get one accepted.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace ferry::dipc {

inline constexpr size_t kFragmentHeaderBytes = 32;
inline constexpr uint32_t kFragmentMagic = 0x31475246;  // "FRG1" read as little-endian

struct FragmentHeader {
  uint32_t index = 0;
  uint32_t count = 1;
  uint32_t total = 0;  // bytes of the whole message
  uint64_t sender = 0;
  uint64_t message = 0;
};

void write_fragment_header(const FragmentHeader& h, std::byte* out);  // kFragmentHeaderBytes
// nullopt when the bytes are too short or the magic is wrong.
std::optional<FragmentHeader> read_fragment_header(std::span<const std::byte> fragment);
// How many fragments carry `total` bytes at `payload` bytes each (1 for an empty message).
uint32_t fragment_count(size_t total, size_t payload);

// Rebuilds messages from fragments arriving in any order, interleaved with other messages'.
// Bounded: a message larger than max_message, or one whose fragments would push the bytes held
// for incomplete messages past memory_cap, is refused; an incomplete message not completed
// within `timeout` of its first fragment (its sender died, a fragment was lost) is abandoned.
class Reassembler {
 public:
  using Clock = std::chrono::steady_clock;
  Reassembler(size_t max_message, size_t payload, size_t memory_cap, std::chrono::milliseconds timeout);

  enum class Outcome { kWhole, kPartial, kRefused };
  // Takes one received fragment, header included. kWhole: `*whole` is the complete message,
  // valid until the next call (a single-fragment message is the fragment's own bytes, not
  // copied). kPartial: held until its other fragments come. kRefused: malformed, inconsistent
  // with the fragments before it, a duplicate, or over a bound; counted in refused().
  Outcome add(std::span<const std::byte> fragment, Clock::time_point now, std::span<const std::byte>* whole);
  // Abandons incomplete messages older than the timeout; returns how many.
  size_t expire(Clock::time_point now);

  uint64_t refused() const { return refused_; }
  uint64_t abandoned() const { return abandoned_; }
  size_t held_bytes() const { return held_bytes_; }
  size_t incomplete() const { return partial_.size(); }

 private:
  // Not zeroed, and kept for the next message: a 1 MiB message allocated afresh each time cost
  // the pager more in page faults than its copy.
  struct Buffer {
    std::unique_ptr<std::byte[]> data;
    size_t size = 0, capacity = 0;
  };
  Buffer take_buffer(size_t size);
  void give_back(Buffer b);
  struct Partial {
    Buffer bytes;
    std::vector<bool> have;
    uint32_t missing = 0;
    Clock::time_point started;
  };
  using Key = std::pair<uint64_t, uint64_t>;  // sender, message
  void drop(std::map<Key, Partial>::iterator it);

  size_t max_message_, payload_, memory_cap_;
  std::chrono::milliseconds timeout_;
  std::map<Key, Partial> partial_;
  Buffer last_whole_;
  std::vector<Buffer> spare_;
  size_t held_bytes_ = 0;
  uint64_t refused_ = 0, abandoned_ = 0;
};

}  // namespace ferry::dipc
