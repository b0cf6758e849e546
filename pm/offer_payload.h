// Internal to pm/: what travels with a migration's Offer besides the image, the pages that go
// with the state (written pages of file mappings) and the carried files' contents
// (pm/carried_files.h), and how it is split when it does not fit one message.
//
// The source sends a payload that would make the Offer larger than kInlinePayloadBytes as
// OfferParts of at most that much each, all at once, and the Offer once every part is
// acknowledged; the destination holds the parts (HeldPayloads) until the Offer takes them.
// A JVM carries ~12 MiB of written pages of its class-data archive this way.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dipc/status.h"
#include "pm/carried_files.h"
#include "pm/image.capnp.h"
#include "pm/pm.capnp.h"

namespace ferry::pm {

inline constexpr uint64_t kInlinePayloadBytes = 1536 * 1024;  // the agents' frames hold 2 MiB

struct OfferPayload {
  struct Page {
    uint64_t address = 0;
    std::vector<std::byte> bytes;
  };
  struct Slice {
    uint32_t file = 0;
    uint64_t offset = 0;
    std::vector<std::byte> bytes;
  };
  std::vector<Page> eager;
  std::vector<Slice> carried;

  uint64_t bytes() const;
  // Moves this payload's runs into parts of at most `limit` bytes each (a run larger than
  // that, which the readers never make, is a part of its own). Leaves this empty.
  std::vector<OfferPayload> split(uint64_t limit);
  // Appends another's runs (the destination joining the parts and the Offer).
  void append(OfferPayload&& other);
  // The carried files' contents, as the image describes them; kBadMessage for a slice that
  // falls outside its file or a file whose slices do not cover it.
  Result<CarriedContents> carried_contents(wire::ProcessImage::Reader image) const;

  template <class Builder>  // wire::Offer::Builder or wire::OfferPart::Builder
  void write(Builder b) const {
    auto e = b.initEager(uint32_t(eager.size()));
    for (uint32_t i = 0; i < eager.size(); ++i) {
      e[i].setAddress(eager[i].address);
      e[i].setData(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(eager[i].bytes.data()), eager[i].bytes.size()));
    }
    auto c = b.initCarried(uint32_t(carried.size()));
    for (uint32_t i = 0; i < carried.size(); ++i) {
      c[i].setFile(carried[i].file);
      c[i].setOffset(carried[i].offset);
      c[i].setData(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(carried[i].bytes.data()), carried[i].bytes.size()));
    }
  }
  template <class Reader>  // wire::Offer::Reader or wire::OfferPart::Reader
  static OfferPayload read(Reader r) {
    OfferPayload p;
    for (auto e : r.getEager()) {
      auto d = e.getData();
      p.eager.push_back({e.getAddress(), {reinterpret_cast<const std::byte*>(d.begin()), reinterpret_cast<const std::byte*>(d.end())}});
    }
    for (auto c : r.getCarried()) {
      auto d = c.getData();
      p.carried.push_back({c.getFile(), c.getOffset(), {reinterpret_cast<const std::byte*>(d.begin()), reinterpret_cast<const std::byte*>(d.end())}});
    }
    return p;
  }
};

// The destination's parts that wait for their Offer, by migration id. Bounded: at most
// `max_bytes` held in all; parts of a migration whose Offer has not come `timeout` after its
// first part are dropped.
class HeldPayloads {
 public:
  using Clock = std::chrono::steady_clock;
  HeldPayloads(uint64_t max_bytes, std::chrono::milliseconds timeout) : max_bytes_(max_bytes), timeout_(timeout) {}

  // kRefused over the bound; kBadMessage for a part index seen before.
  Status add(const std::string& migration, uint32_t index, OfferPayload part, Clock::time_point now);
  // The parts of `migration`, joined in index order, and forgotten here; kNotFound (naming how
  // many came) unless exactly `parts` came.
  Result<OfferPayload> take(const std::string& migration, uint32_t parts);
  // Drops what waited too long; returns the migration ids dropped.
  std::vector<std::string> expire(Clock::time_point now);
  uint64_t held_bytes() const { return held_; }

 private:
  struct Held {
    Clock::time_point first;
    std::map<uint32_t, OfferPayload> parts;
    uint64_t bytes = 0;
  };
  std::map<std::string, Held> held_by_id_;
  uint64_t held_ = 0, max_bytes_;
  std::chrono::milliseconds timeout_;
};

}  // namespace ferry::pm
