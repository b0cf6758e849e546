// Frames: what travels is what arrives; anything else is refused as a value, never a crash.
#include "dipc/frame.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace ferry::dipc {
namespace {

ClusterKey key_of(const char* text) {
  std::string s(text);
  return ClusterKey::from_bytes(std::as_bytes(std::span(s.data(), s.size())));
}

std::vector<std::byte> ping_frame(ClusterKey* key, const std::string& payload = "hello") {
  capnp::MallocMessageBuilder m;
  auto env = m.initRoot<wire::Envelope>();
  env.setRequestId(42);
  env.setFrom("agent@n1");
  env.setTo("master");
  env.setCallerUid(1000);
  env.setBodyType(capnp::typeId<wire::Ping>());
  env.getBody().initAs<wire::Ping>().setPayload(
      capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(payload.data()), payload.size()));
  std::vector<std::byte> out;
  EXPECT_TRUE(seal_frame(m, key, out).ok());
  return out;
}

TEST(Frame, RoundTripWithAndWithoutKey) {
  auto key = key_of("0123456789abcdef0123456789abcdef");
  for (ClusterKey* k : {&key, static_cast<ClusterKey*>(nullptr)}) {
    auto frame = ping_frame(k, std::string(4096, 'x'));
    auto in = open_frame(frame, k);
    ASSERT_TRUE(in.ok()) << in.error().message;
    auto env = in.value()->envelope();
    EXPECT_EQ(env.getRequestId(), 42u);
    EXPECT_EQ(std::string(env.getFrom().cStr()), "agent@n1");
    EXPECT_EQ(env.getCallerUid(), 1000u);
    ASSERT_TRUE(in.value()->holds<wire::Ping>());
    EXPECT_FALSE(in.value()->holds<wire::Pong>());
    EXPECT_EQ(in.value()->body<wire::Ping>().getPayload().size(), 4096u);
  }
}

TEST(Frame, TamperedOrForeignFramesAreUnauthorized) {
  auto key = key_of("0123456789abcdef0123456789abcdef");
  auto other = key_of("fedcba9876543210fedcba9876543210");
  auto frame = ping_frame(&key);
  auto foreign = open_frame(frame, &other);
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().code, ErrorCode::kUnauthorized);
  for (size_t i : {size_t(0) + 20, frame.size() / 2, frame.size() - 1}) {
    auto t = frame;
    t[i] ^= std::byte{0x01};
    auto r = open_frame(t, &key);
    ASSERT_FALSE(r.ok()) << "flipped byte " << i;
    EXPECT_EQ(r.error().code, ErrorCode::kUnauthorized) << r.error().message;
  }
  auto unsigned_frame = ping_frame(nullptr);
  auto r = open_frame(unsigned_frame, &key);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthorized) << "a fabric frame must carry a MAC";
}

TEST(Frame, TruncatedAndMalformedFramesAreBadMessages) {
  auto key = key_of("0123456789abcdef0123456789abcdef");
  auto frame = ping_frame(&key);
  for (size_t len = 0; len < frame.size(); ++len) {
    auto r = open_frame(std::span(frame.data(), len), &key);
    ASSERT_FALSE(r.ok()) << "truncated to " << len;
  }
  auto bad_magic = frame;
  bad_magic[0] = std::byte{'X'};
  EXPECT_EQ(open_frame(bad_magic, &key).error().code, ErrorCode::kBadMessage);
  std::vector<std::byte> huge(kMaxFrameBytes + 1);
  EXPECT_EQ(open_frame(huge, &key).error().code, ErrorCode::kBadMessage);
}

TEST(Frame, AuthenticFrameWithGarbageBodyIsRefusedAsAValue) {
  // A peer that holds the key but sends nonsense (a bug, not an attack): the MAC is right,
  // the Cap'n Proto message is not.
  auto key = key_of("0123456789abcdef0123456789abcdef");
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    auto frame = ping_frame(&key);
    size_t body_end = frame.size() - ClusterKey::kTagBytes;
    for (int k = 0; k < 4; ++k) frame[kFrameHeaderBytes + rng() % (body_end - kFrameHeaderBytes)] = std::byte(rng());
    auto tag = key.sign(std::span(frame.data(), body_end));
    std::copy(tag.begin(), tag.end(), frame.begin() + std::ptrdiff_t(body_end));
    auto r = open_frame(frame, &key);
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kBadMessage);
      continue;
    }
    // Some corruptions still decode (they hit plain data): reading them must not crash.
    auto env = r.value()->envelope();
    (void)env.getFrom();
    (void)env.getRequestId();
  }
}

TEST(Frame, RandomBytesNeverCrashTheDecoder) {
  auto key = key_of("0123456789abcdef0123456789abcdef");
  std::mt19937 rng(11);
  for (int trial = 0; trial < 10000; ++trial) {
    std::vector<std::byte> junk(rng() % 2048);
    for (auto& b : junk) b = std::byte(rng());
    if (junk.size() >= 4 && trial % 2) std::memcpy(junk.data(), "FRY2", 4);  // get past the magic too
    EXPECT_FALSE(open_frame(junk, &key).ok());
    EXPECT_FALSE(open_frame(junk, nullptr).ok() && junk.size() < kFrameHeaderBytes);
  }
}

TEST(Frame, EveryTagHasAFreshNonce) {
  auto key = key_of("0123456789abcdef0123456789abcdef");
  std::string data = "the same bytes";
  auto bytes = std::as_bytes(std::span(data.data(), data.size()));
  auto a = key.sign(bytes), b = key.sign(bytes);
  EXPECT_NE(a, b) << "a nonce was reused";
  EXPECT_TRUE(key.verify(bytes, a));
  EXPECT_TRUE(key.verify(bytes, b));
  auto c = a;
  c[0] ^= std::byte{1};  // another nonce: the tag no longer fits
  EXPECT_FALSE(key.verify(bytes, c));
  auto other = key_of("fedcba9876543210fedcba9876543210");
  EXPECT_FALSE(other.verify(bytes, a));
}

TEST(Frame, OversizedMessagesAreRefusedWhenSealed) {
  capnp::MallocMessageBuilder m;
  auto env = m.initRoot<wire::Envelope>();
  env.getBody().initAs<wire::Ping>().initPayload(kMaxFrameBytes);
  std::vector<std::byte> out;
  auto s = seal_frame(m, nullptr, out);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kInvalid);
}

}  // namespace
}  // namespace ferry::dipc
