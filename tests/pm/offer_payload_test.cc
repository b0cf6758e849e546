// What goes with an Offer: split into parts that each fit a message, held at the destination
// until the Offer, joined back into the carried files' contents.
#include "pm/offer_payload.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

namespace ferry::pm {
namespace {

std::vector<std::byte> bytes_of(size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte((i * 7 + size_t(seed)) & 0xff);
  return v;
}

OfferPayload sample() {
  OfferPayload p;
  for (int i = 0; i < 10; ++i) p.eager.push_back({0x1000u * uint64_t(i + 1), bytes_of(700 * 1024, i)});
  p.carried.push_back({0, 0, bytes_of(1 << 20, 50)});
  p.carried.push_back({0, 1 << 20, bytes_of(5, 51)});
  return p;
}

TEST(OfferPayload, SplitsIntoPartsThatEachFitAndLosesNothing) {
  OfferPayload p = sample();
  uint64_t total = p.bytes();
  auto parts = p.split(kInlinePayloadBytes);
  EXPECT_EQ(p.bytes(), 0u);
  ASSERT_GT(parts.size(), 1u);
  uint64_t sum = 0;
  size_t eager = 0;
  for (const auto& part : parts) {
    EXPECT_LE(part.bytes(), kInlinePayloadBytes);
    sum += part.bytes();
    eager += part.eager.size();
  }
  EXPECT_EQ(sum, total);
  EXPECT_EQ(eager, 10u);
}

TEST(OfferPayload, HeldPartsAreJoinedInOrderForTheirOffer) {
  auto parts = sample().split(kInlinePayloadBytes);
  HeldPayloads held(1ull << 30, std::chrono::seconds(60));
  auto now = HeldPayloads::Clock::now();
  for (uint32_t i = uint32_t(parts.size()); i-- > 0;) ASSERT_TRUE(held.add("m1", i, parts[i], now).ok());
  EXPECT_FALSE(held.add("m1", 0, parts[0], now).ok()) << "a part that comes twice";
  auto joined = held.take("m1", uint32_t(parts.size()));
  ASSERT_TRUE(joined.ok()) << joined.error().message;
  ASSERT_EQ(joined.value().eager.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(joined.value().eager[size_t(i)].address, 0x1000u * uint64_t(i + 1));
  EXPECT_EQ(held.held_bytes(), 0u);
}

TEST(OfferPayload, AnOfferMissingAPartIsRefusedAndNothingStaysHeld) {
  auto parts = sample().split(kInlinePayloadBytes);
  HeldPayloads held(1ull << 30, std::chrono::seconds(60));
  auto now = HeldPayloads::Clock::now();
  ASSERT_TRUE(held.add("m1", 0, parts[0], now).ok());
  auto joined = held.take("m1", uint32_t(parts.size()));
  ASSERT_FALSE(joined.ok());
  EXPECT_NE(joined.error().message.find("1 of its"), std::string::npos) << joined.error().message;
  EXPECT_EQ(held.held_bytes(), 0u);
}

TEST(OfferPayload, PartsBeyondTheBoundOrTooOldAreDropped) {
  auto parts = sample().split(kInlinePayloadBytes);
  HeldPayloads held(kInlinePayloadBytes + 1, std::chrono::seconds(60));
  auto now = HeldPayloads::Clock::now();
  ASSERT_TRUE(held.add("m1", 0, parts[0], now).ok());
  EXPECT_EQ(held.add("m1", 1, parts[1], now).error().code, ErrorCode::kRefused);
  EXPECT_TRUE(held.expire(now + std::chrono::seconds(30)).empty());
  auto dropped = held.expire(now + std::chrono::seconds(61));
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(held.held_bytes(), 0u);
}

TEST(OfferPayload, CarriedContentsMustCoverEachFileExactly) {
  capnp::MallocMessageBuilder m;
  auto image = m.initRoot<wire::ProcessImage>();
  auto files = image.initCarried(1);
  files[0].setPath("/tmp/hsperfdata_root/2");
  files[0].setSize((1 << 20) + 5);
  OfferPayload p = sample();
  auto contents = p.carried_contents(image.asReader());
  ASSERT_TRUE(contents.ok()) << contents.error().message;
  EXPECT_EQ(contents.value()[0], [] {
    auto v = bytes_of(1 << 20, 50);
    auto t = bytes_of(5, 51);
    v.insert(v.end(), t.begin(), t.end());
    return v;
  }());
  p.carried.pop_back();
  EXPECT_EQ(p.carried_contents(image.asReader()).error().code, ErrorCode::kBadMessage);
  p.carried.push_back({0, 1 << 20, bytes_of(6, 51)});  // one byte past its end
  EXPECT_EQ(p.carried_contents(image.asReader()).error().code, ErrorCode::kBadMessage);
  p.carried.back() = {1, 0, bytes_of(1, 1)};  // no such file
  EXPECT_EQ(p.carried_contents(image.asReader()).error().code, ErrorCode::kBadMessage);
}

}  // namespace
}  // namespace ferry::pm
