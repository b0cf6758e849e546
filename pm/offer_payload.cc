#include "pm/offer_payload.h"

#include <algorithm>
#include <cstring>

namespace ferry::pm {

uint64_t OfferPayload::bytes() const {
  uint64_t n = 0;
  for (const auto& e : eager) n += e.bytes.size() + 16;
  for (const auto& c : carried) n += c.bytes.size() + 24;
  return n;
}

std::vector<OfferPayload> OfferPayload::split(uint64_t limit) {
  std::vector<OfferPayload> parts;
  uint64_t in_last = limit;  // none open yet
  auto room_for = [&](uint64_t n) {
    if (parts.empty() || in_last + n > limit) {
      parts.emplace_back();
      in_last = 0;
    }
    in_last += n;
    return &parts.back();
  };
  for (auto& e : eager) room_for(e.bytes.size() + 16)->eager.push_back(std::move(e));
  for (auto& c : carried) room_for(c.bytes.size() + 24)->carried.push_back(std::move(c));
  eager.clear();
  carried.clear();
  return parts;
}

void OfferPayload::append(OfferPayload&& other) {
  for (auto& e : other.eager) eager.push_back(std::move(e));
  for (auto& c : other.carried) carried.push_back(std::move(c));
  other.eager.clear();
  other.carried.clear();
}

Result<CarriedContents> OfferPayload::carried_contents(wire::ProcessImage::Reader image) const {
  auto files = image.getCarried();
  CarriedContents out(files.size());
  std::vector<uint64_t> covered(files.size(), 0);
  for (uint32_t i = 0; i < files.size(); ++i) {
    if (files[i].getKind() == wire::CarriedFile::Kind::MEMFD_LAZY) continue;  // its pages move as memory
    if (files[i].getSize() > kCarryLimitBytes)
      return make_error(ErrorCode::kBadMessage, "carried file " + std::string(files[i].getPath()) + " is larger than any carried");
    out[i].resize(files[i].getSize());
  }
  for (const auto& c : carried) {
    if (c.file >= files.size() || c.offset > out[c.file].size() || c.bytes.size() > out[c.file].size() - c.offset)
      return make_error(ErrorCode::kBadMessage, "a slice of carried file " + std::to_string(c.file) + " falls outside it");
    std::memcpy(out[c.file].data() + c.offset, c.bytes.data(), c.bytes.size());
    covered[c.file] += c.bytes.size();
  }
  for (uint32_t i = 0; i < files.size(); ++i)
    if (covered[i] != out[i].size())
      return make_error(ErrorCode::kBadMessage, "carried file " + std::string(files[i].getPath()) + " came with " +
                                                    std::to_string(covered[i]) + " of its " + std::to_string(out[i].size()) + " bytes");
  return out;
}

Status HeldPayloads::add(const std::string& migration, uint32_t index, OfferPayload part, Clock::time_point now) {
  uint64_t n = part.bytes();
  if (held_ + n > max_bytes_)
    return make_error(ErrorCode::kRefused, "this node holds " + std::to_string(held_ >> 20) + " MiB of offers already (at most " +
                                               std::to_string(max_bytes_ >> 20) + " MiB)");
  auto [it, fresh] = held_by_id_.try_emplace(migration);
  if (fresh) it->second.first = now;
  if (!it->second.parts.emplace(index, std::move(part)).second)
    return make_error(ErrorCode::kBadMessage, "part " + std::to_string(index) + " of migration " + migration + " came twice");
  it->second.bytes += n;
  held_ += n;
  return Status::Ok();
}

Result<OfferPayload> HeldPayloads::take(const std::string& migration, uint32_t parts) {
  auto it = held_by_id_.find(migration);
  size_t came = it == held_by_id_.end() ? 0 : it->second.parts.size();
  bool whole = came == parts && (parts == 0 || it->second.parts.rbegin()->first == parts - 1);
  OfferPayload joined;
  if (it != held_by_id_.end()) {
    if (whole)
      for (auto& [index, p] : it->second.parts) joined.append(std::move(p));
    held_ -= it->second.bytes;
    held_by_id_.erase(it);
  }
  if (!whole)
    return make_error(ErrorCode::kNotFound, "its offer came with " + std::to_string(came) + " of its " + std::to_string(parts) +
                                                " parts (dropped after waiting too long, or lost)");
  return joined;
}

std::vector<std::string> HeldPayloads::expire(Clock::time_point now) {
  std::vector<std::string> dropped;
  for (auto it = held_by_id_.begin(); it != held_by_id_.end();) {
    if (now - it->second.first < timeout_) {
      ++it;
      continue;
    }
    dropped.push_back(it->first);
    held_ -= it->second.bytes;
    it = held_by_id_.erase(it);
  }
  return dropped;
}

}  // namespace ferry::pm
