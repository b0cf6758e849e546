// The cluster key: a shared secret every daemon of a cluster holds, with which each
// inter-node message is authenticated (HMAC-SHA256). Internal to dipc/.
#pragma once

#include <array>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>

#include "dipc/status.h"

namespace ferry::dipc {

class ClusterKey {
 public:
  static constexpr size_t kMacBytes = 32;
  using Mac = std::array<std::byte, kMacBytes>;

  // Reads a key file (at least 16 bytes; only its owner may read it). Errors name the file.
  static Result<ClusterKey> load(const std::filesystem::path& file);
  // Writes a new random 32-byte key, mode 0600. Fails if the file exists.
  static Status generate(const std::filesystem::path& file);
  static ClusterKey from_bytes(std::span<const std::byte> secret);

  // HMAC-SHA256 of the parts, concatenated. Thread-compatible (one user at a time).
  Mac mac(std::span<const std::byte> a, std::span<const std::byte> b = {}) const;
  // Constant-time comparison of mac(a, b) with `expected`.
  bool verify(std::span<const std::byte> a, std::span<const std::byte> b,
              std::span<const std::byte> expected) const;

  ClusterKey(ClusterKey&&) noexcept;
  ClusterKey& operator=(ClusterKey&&) noexcept;
  ~ClusterKey();

 private:
  struct State;
  explicit ClusterKey(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace ferry::dipc
