// Fragments: a message cut into fragments and rebuilt from them in any order, interleaved with
// other messages, is the message; anything inconsistent, duplicated or over a bound is refused
// and counted, and an incomplete message is abandoned after its timeout.
#include "dipc/fragment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace ferry::dipc {
namespace {

using namespace std::chrono_literals;
using Clock = Reassembler::Clock;
constexpr size_t kPayload = 100;

std::vector<std::byte> message_of(size_t n, uint8_t seed) {
  std::vector<std::byte> m(n);
  for (size_t i = 0; i < n; ++i) m[i] = std::byte(uint8_t(i * 31 + seed));
  return m;
}

std::vector<std::vector<std::byte>> cut(const std::vector<std::byte>& m, uint64_t sender, uint64_t id) {
  std::vector<std::vector<std::byte>> out;
  FragmentHeader h{0, fragment_count(m.size(), kPayload), uint32_t(m.size()), sender, id};
  for (uint32_t i = 0; i < h.count; ++i) {
    h.index = i;
    size_t off = size_t(i) * kPayload, len = std::min(kPayload, m.size() - std::min(m.size(), off));
    std::vector<std::byte> f(kFragmentHeaderBytes + len);
    write_fragment_header(h, f.data());
    std::copy_n(m.begin() + long(off), len, f.begin() + kFragmentHeaderBytes);
    out.push_back(std::move(f));
  }
  return out;
}

TEST(Fragment, HeaderRoundTripsAndForeignBytesAreNotAHeader) {
  FragmentHeader h{3, 7, 650, 0x1122334455667788, 99};
  std::byte b[kFragmentHeaderBytes];
  write_fragment_header(h, b);
  auto r = read_fragment_header(b);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->index, 3u);
  EXPECT_EQ(r->count, 7u);
  EXPECT_EQ(r->total, 650u);
  EXPECT_EQ(r->sender, 0x1122334455667788u);
  EXPECT_EQ(r->message, 99u);
  b[0] = std::byte{0};
  EXPECT_FALSE(read_fragment_header(b));
  EXPECT_FALSE(read_fragment_header(std::span<const std::byte>(b, 10)));
  EXPECT_EQ(fragment_count(0, 100), 1u);
  EXPECT_EQ(fragment_count(100, 100), 1u);
  EXPECT_EQ(fragment_count(101, 100), 2u);
}

TEST(Fragment, InterleavedShuffledMessagesFromSeveralSendersAreRebuiltExactly) {
  Reassembler r(100000, kPayload, 1 << 20, 10s);
  std::mt19937 rng(7);
  std::vector<std::vector<std::byte>> messages;
  std::vector<std::vector<std::byte>> fragments;
  for (uint64_t sender = 1; sender <= 3; ++sender)
    for (uint64_t id = 0; id < 10; ++id) {  // the same ids from every sender
      messages.push_back(message_of(size_t(rng() % 2000), uint8_t(sender * 16 + id)));
      for (auto& f : cut(messages.back(), sender, id)) fragments.push_back(std::move(f));
    }
  std::shuffle(fragments.begin(), fragments.end(), rng);
  auto text = [](std::span<const std::byte> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); };
  std::vector<std::string> rebuilt, sent;
  for (auto& m : messages) sent.push_back(text(m));
  for (auto& f : fragments) {
    std::span<const std::byte> whole;
    auto o = r.add(f, Clock::now(), &whole);
    ASSERT_NE(o, Reassembler::Outcome::kRefused);
    if (o == Reassembler::Outcome::kWhole) rebuilt.push_back(text(whole));
  }
  ASSERT_EQ(rebuilt.size(), sent.size());
  std::sort(rebuilt.begin(), rebuilt.end());
  std::sort(sent.begin(), sent.end());
  EXPECT_EQ(rebuilt, sent);
  EXPECT_EQ(r.held_bytes(), 0u);
  EXPECT_EQ(r.incomplete(), 0u);
}

TEST(Fragment, InconsistentDuplicatedOrOversizedFragmentsAreRefused) {
  Reassembler r(1000, kPayload, 1500, 10s);
  std::span<const std::byte> whole;
  auto frags = cut(message_of(250, 1), 5, 1);  // 3 fragments
  ASSERT_EQ(r.add(frags[0], Clock::now(), &whole), Reassembler::Outcome::kPartial);
  EXPECT_EQ(r.add(frags[0], Clock::now(), &whole), Reassembler::Outcome::kRefused);  // twice
  auto shorter = frags[1];
  shorter.pop_back();
  EXPECT_EQ(r.add(shorter, Clock::now(), &whole), Reassembler::Outcome::kRefused);  // cut short
  auto lying = frags[1];
  FragmentHeader h{1, 3, 260, 5, 1};  // same message, another total
  write_fragment_header(h, lying.data());
  EXPECT_EQ(r.add(lying, Clock::now(), &whole), Reassembler::Outcome::kRefused);
  auto big = cut(message_of(1001, 2), 5, 2);  // over max_message
  EXPECT_EQ(r.add(big[0], Clock::now(), &whole), Reassembler::Outcome::kRefused);
  auto a = cut(message_of(1000, 3), 6, 1), b = cut(message_of(1000, 4), 7, 1);
  EXPECT_EQ(r.add(a[0], Clock::now(), &whole), Reassembler::Outcome::kPartial);  // 250 + 1000 held
  EXPECT_EQ(r.add(b[0], Clock::now(), &whole), Reassembler::Outcome::kRefused);  // would pass 1500
  EXPECT_EQ(r.refused(), 5u);
  // The first message still completes.
  EXPECT_EQ(r.add(frags[2], Clock::now(), &whole), Reassembler::Outcome::kPartial);
  ASSERT_EQ(r.add(frags[1], Clock::now(), &whole), Reassembler::Outcome::kWhole);
  EXPECT_EQ(std::vector<std::byte>(whole.begin(), whole.end()), message_of(250, 1));
}

TEST(Fragment, AnIncompleteMessageIsAbandonedAfterItsTimeout) {
  Reassembler r(10000, kPayload, 1 << 20, 5s);
  std::span<const std::byte> whole;
  auto frags = cut(message_of(500, 9), 1, 1);
  auto t0 = Clock::now();
  ASSERT_EQ(r.add(frags[0], t0, &whole), Reassembler::Outcome::kPartial);
  EXPECT_EQ(r.expire(t0 + 4s), 0u);
  EXPECT_EQ(r.expire(t0 + 6s), 1u);
  EXPECT_EQ(r.abandoned(), 1u);
  EXPECT_EQ(r.held_bytes(), 0u);
  // Its late fragments start a new incomplete message, never a wrong whole one.
  for (size_t i = 1; i < frags.size(); ++i) EXPECT_EQ(r.add(frags[i], t0 + 7s, &whole), Reassembler::Outcome::kPartial);
}

}  // namespace
}  // namespace ferry::dipc
