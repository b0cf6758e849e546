// The cluster key: a shared secret every daemon of a cluster holds, with which each
// inter-node message is authenticated. Internal to dipc/.
//
// The MAC is AES-256-GMAC (AES-GCM over associated data only, NIST SP 800-38D) with a
// 96-bit nonce that is unique per message: 64 random bits drawn per key object (renewed every
// 2^32 messages) and a 32-bit counter. A tag is the nonce (session then counter, host byte
// order: the receiver's replay guard reads them) followed by the 16-byte GCM tag.
// GMAC rather than HMAC-SHA256 because of cost: 0.46 us against 2.6 us for a 4 KiB frame on
// the development machine, and a request/reply computes four of them (docs/DIPC.md).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

#include "dipc/status.h"

namespace ferry::dipc {

class ClusterKey {
 public:
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = kNonceBytes + 16;
  using Tag = std::array<std::byte, kTagBytes>;

  // Reads a key file (at least 16 bytes; only its owner may read it). Errors name the file.
  static Result<ClusterKey> load(const std::filesystem::path& file);
  // Writes a new random 32-byte key, mode 0600. Fails if the file exists.
  static Status generate(const std::filesystem::path& file);
  // The AES key is SHA-256 of the secret, so a secret of any length works.
  static ClusterKey from_bytes(std::span<const std::byte> secret);

  // A tag for `data` under a fresh nonce. Thread-compatible (one user at a time).
  Tag sign(std::span<const std::byte> data);
  // True when `tag` was made by sign() of these bytes with this key (constant-time compare).
  bool verify(std::span<const std::byte> data, std::span<const std::byte> tag) const;

  ClusterKey(ClusterKey&&) noexcept;
  ClusterKey& operator=(ClusterKey&&) noexcept;
  ~ClusterKey();

 private:
  struct State;
  explicit ClusterKey(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace ferry::dipc
