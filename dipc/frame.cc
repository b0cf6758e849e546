#include "dipc/frame.h"
#include "dipc/port.h"

#include <cstdio>

#include <kj/exception.h>
#include <kj/io.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>

namespace ferry::dipc {
namespace {

constexpr uint32_t kMagic = 0x32595246;  // "FRY2" little-endian
constexpr uint32_t kFlagMac = 1;

struct Header {
  uint32_t magic;
  uint32_t flags;
  uint32_t body_len;
  uint32_t reserved;
  int64_t sent_ms;
};
static_assert(sizeof(Header) == kFrameHeaderBytes);

// Appends to a byte vector: Cap'n Proto writes its stream encoding straight into the frame.
class VectorOutput final : public kj::OutputStream {
 public:
  explicit VectorOutput(std::vector<std::byte>& out) : out_(out) {}
  void write(const void* buffer, size_t size) override {
    auto* p = static_cast<const std::byte*>(buffer);
    out_.insert(out_.end(), p, p + size);
  }

 private:
  std::vector<std::byte>& out_;
};

Error bad(std::string what) { return make_error(ErrorCode::kBadMessage, std::move(what)); }

}  // namespace

Status build_frame(capnp::MessageBuilder& message, bool authenticated, std::vector<std::byte>& out) {
  size_t body_bytes = capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word);
  size_t total = kFrameHeaderBytes + body_bytes + (authenticated ? ClusterKey::kTagBytes : 0);
  if (total > kMaxFrameBytes)
    return make_error(ErrorCode::kInvalid, "message of " + std::to_string(total) +
                                               " bytes exceeds the frame limit of " +
                                               std::to_string(kMaxFrameBytes));
  out.clear();
  out.reserve(total);
  Header h{kMagic, authenticated ? kFlagMac : 0, uint32_t(body_bytes), 0, 0};
  auto* hp = reinterpret_cast<const std::byte*>(&h);
  out.insert(out.end(), hp, hp + sizeof h);
  VectorOutput stream(out);
  capnp::writeMessage(stream, message);
  if (authenticated) out.resize(total);  // the tag's place
  return Status::Ok();
}

void sign_frame(std::vector<std::byte>& frame, ClusterKey& key, int64_t sent_ms) {
  std::memcpy(frame.data() + offsetof(Header, sent_ms), &sent_ms, sizeof sent_ms);
  size_t signed_bytes = frame.size() - ClusterKey::kTagBytes;
  auto tag = key.sign(std::span<const std::byte>(frame.data(), signed_bytes));
  std::memcpy(frame.data() + signed_bytes, tag.data(), tag.size());
}

int64_t frame_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status seal_frame(capnp::MessageBuilder& message, ClusterKey* key, std::vector<std::byte>& out) {
  if (Status s = build_frame(message, key != nullptr, out); !s) return s;
  if (key) sign_frame(out, *key, frame_clock_ms());
  return Status::Ok();
}

Result<std::unique_ptr<Inbound>> open_frame(std::span<const std::byte> bytes, const ClusterKey* key) {
  if (bytes.size() < kFrameHeaderBytes)
    return bad("frame of " + std::to_string(bytes.size()) + " bytes is shorter than its header");
  if (bytes.size() > kMaxFrameBytes) return bad("frame exceeds the size limit");
  Header h;
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != kMagic) return bad("frame has a wrong magic number");
  if (h.reserved != 0 || (h.flags & ~kFlagMac) != 0) return bad("frame has unknown flags");
  bool has_mac = (h.flags & kFlagMac) != 0;
  size_t expect = kFrameHeaderBytes + size_t(h.body_len) + (has_mac ? ClusterKey::kTagBytes : 0);
  if (h.body_len % sizeof(capnp::word) != 0 || h.body_len == 0)
    return bad("frame body length " + std::to_string(h.body_len) + " is not a whole number of words");
  if (expect != bytes.size())
    return bad("frame length " + std::to_string(bytes.size()) + " does not match its header (" +
               std::to_string(expect) + ")");
  if (key) {
    if (!has_mac) return make_error(ErrorCode::kUnauthorized, "frame carries no MAC");
    auto signed_part = bytes.first(kFrameHeaderBytes + h.body_len);
    auto tag = bytes.subspan(kFrameHeaderBytes + h.body_len, ClusterKey::kTagBytes);
    if (!key->verify(signed_part, tag))
      return make_error(ErrorCode::kUnauthorized, "frame MAC does not match the cluster key");
  }
  auto in = std::make_unique<Inbound>();
  if (has_mac) {
    auto tag = bytes.subspan(kFrameHeaderBytes + h.body_len, ClusterKey::kTagBytes);
    std::memcpy(&in->origin_.session, tag.data(), 8);
    std::memcpy(&in->origin_.counter, tag.data() + 8, 4);
    in->origin_.sent_ms = h.sent_ms;
  }
  in->word_count_ = h.body_len / sizeof(capnp::word);
  in->words_.reset(new capnp::word[in->word_count_]);
  std::memcpy(in->words_.get(), bytes.data() + kFrameHeaderBytes, h.body_len);
  try {
    capnp::ReaderOptions options;
    // Validation reads the whole message once; handlers read it again: allow a few passes.
    options.traversalLimitInWords = 8 * kMaxFrameBytes / sizeof(capnp::word);
    options.nestingLimit = 32;
    kj::ArrayPtr<const capnp::word> words(in->words_.get(), in->word_count_);
    in->reader_.emplace(words, options);
    auto root = in->reader_->getRoot<wire::Envelope>();
    root.totalSize();  // traverses every pointer: a malformed message throws here, not later
    // Bounds are checked; types are checked when read: read every envelope field now, so that
    // only a body (read by its handler, which is guarded) can still be of the wrong type.
    (void)root.getFrom();
    (void)root.getTo();
    (void)root.getFromAddress();
    if (root.hasError()) (void)root.getError().getMessage();
    in->root_ = root;
  } catch (const kj::Exception& e) {
    return bad(std::string("message does not decode: ") + e.getDescription().cStr());
  }
  return in;
}

// Here rather than in port.cc: the CLI's LocalClient uses it, and the CLI must not pull in the
// fabric (loading libfabric costs every command ~0.2 s: its PSM provider calibrates a clock).
std::string Port::describe_type(const Inbound& in) {
  auto env = in.envelope();
  if (env.getBodyType() == 0) return "message without a body";
  char buf[32];
  snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(env.getBodyType()));
  return std::string("message of type ") + buf;
}

}  // namespace ferry::dipc
