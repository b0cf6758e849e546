// Frames: how one Envelope travels as bytes, on the fabric and on unix sockets. Internal to dipc/.
//
//   offset 0  magic "FRY2"   u32
//          4  flags          u32   bit 0: an authentication tag follows the body
//          8  body length    u32   bytes of Cap'n Proto stream encoding, a multiple of 8
//         12  reserved       u32   zero
//         16  send time      i64   ms of CLOCK_REALTIME when signed (0 without a tag)
//         24  body
//   24 + len  tag            28 bytes: nonce and AES-256-GMAC over header and body (when flagged)
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

// Header: magic "FRY2", flags, body length, reserved (0), and the send time (milliseconds of
// CLOCK_REALTIME, set when the frame is signed; 0 unsigned), then the body, then the tag.
inline constexpr size_t kFrameHeaderBytes = 24;
// Page data travels in frames of up to 1 MiB of pages (the pagers size their receive buffers for
// it; other ports keep FabricOptions::max_message at 256 KiB).
inline constexpr size_t kMaxFrameBytes = 2 * 1024 * 1024;

// Who signed a received frame, and when: the tag's nonce (ClusterKey: session, counter) and the
// header's send time. All 0 for a frame without a MAC.
struct FrameOrigin {
  uint64_t session = 0;
  uint32_t counter = 0;
  int64_t sent_ms = 0;
};

// A received message: owns its bytes; safe to keep after the receive buffer is reused.
class Inbound {
 public:
  const FrameOrigin& origin() const { return origin_; }
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
  FrameOrigin origin_;
};

// Serializes `message` (whose root is an Envelope) into `out` (replacing its contents), with
// room for an authentication tag when `authenticated`. Fails with kInvalid when the frame would
// exceed kMaxFrameBytes.
Status build_frame(capnp::MessageBuilder& message, bool authenticated, std::vector<std::byte>& out);
// Stamps a frame built `authenticated` with the send time and signs it (which advances the key's
// nonce). Done as the frame is handed to the fabric, so that a receiver sees each sender's
// counters in order (replay_guard.h); each copy of a frame sent twice is signed again.
void sign_frame(std::vector<std::byte>& frame, ClusterKey& key, int64_t sent_ms);
// The current time as frames carry it: milliseconds of CLOCK_REALTIME.
int64_t frame_clock_ms();
// build_frame, then sign_frame when `key` is given.
Status seal_frame(capnp::MessageBuilder& message, ClusterKey* key, std::vector<std::byte>& out);

// Checks and decodes one frame. With `key`, a frame without a valid MAC is refused with
// kUnauthorized; any other defect is kBadMessage with a message saying what is wrong. Whether
// the frame was seen before is the port's replay guard's to say, not this function's.
Result<std::unique_ptr<Inbound>> open_frame(std::span<const std::byte> bytes, const ClusterKey* key);

}  // namespace ferry::dipc
