// Frames: how one Envelope travels as bytes, on the fabric and on unix sockets. Internal to dipc/.
//
//   offset 0  magic "FRY1"   u32
//          4  flags          u32   bit 0: an authentication tag follows the body
//          8  body length    u32   bytes of Cap'n Proto stream encoding, a multiple of 8
//         12  reserved       u32   zero
//         16  body
//   16 + len  tag            28 bytes: nonce and AES-256-GMAC over header and body (when flagged)
//
// A frame on the fabric must carry a MAC made with the cluster key; a frame on a unix socket
// carries none (the kernel vouches for the peer). open_frame() validates everything before
// anything reads the message: length, MAC, a full traversal of the Cap'n Proto message and
// the types of the envelope's fields, so a malformed frame is rejected as a value, never by
// a crash or an exception escaping. Only the body is typed later, by the handler that reads
// it (the port catches what a handler's reading throws).
#pragma once

#include <capnp/serialize.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "dipc/cluster_key.h"
#include "dipc/dipc.capnp.h"
#include "dipc/status.h"

namespace ferry::dipc {

inline constexpr size_t kFrameHeaderBytes = 16;
// Page data travels in frames of up to 1 MiB of pages (the pagers size their receive buffers for
// it; other ports keep FabricOptions::max_message at 256 KiB).
inline constexpr size_t kMaxFrameBytes = 2 * 1024 * 1024;

// A received message: owns its bytes; safe to keep after the receive buffer is reused.
class Inbound {
 public:
  wire::Envelope::Reader envelope() const { return root_; }
  template <class T>
  bool holds() const { return root_.getBodyType() == capnp::typeId<T>(); }
  // Precondition: holds<T>().
  template <class T>
  typename T::Reader body() const { return root_.getBody().getAs<T>(); }

 private:
  friend Result<std::unique_ptr<Inbound>> open_frame(std::span<const std::byte>, const ClusterKey*);
  std::unique_ptr<capnp::word[]> words_;  // not zeroed first: the frame's body is copied in
  size_t word_count_ = 0;
  std::optional<capnp::FlatArrayMessageReader> reader_;
  wire::Envelope::Reader root_;
};

// Serializes `message` (whose root is an Envelope) into `out` (replacing its contents),
// with an authentication tag when `key` is given (which advances the key's nonce). Fails with kInvalid when the frame would exceed
// kMaxFrameBytes.
Status seal_frame(capnp::MessageBuilder& message, ClusterKey* key, std::vector<std::byte>& out);

// Checks and decodes one frame. With `key`, a frame without a valid MAC is refused with
// kUnauthorized; any other defect is kBadMessage with a message saying what is wrong.
Result<std::unique_ptr<Inbound>> open_frame(std::span<const std::byte> bytes, const ClusterKey* key);

}  // namespace ferry::dipc
