// Stage (xmm/stage.h): pages a precopy sent ahead, held until installed.
#include "xmm/stage.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace ferry::xmm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBase = 0x7f0000000000ull;

std::vector<std::byte> pages_of(uint8_t fill, uint32_t n) { return std::vector<std::byte>(n * kPage, std::byte(fill)); }

TEST(Stage, PagesArriveAndAreFoundAtTheirSourceAddress) {
  auto s = Stage::create({{kBase, kBase + 64 * kPage}, {kBase + 128 * kPage, kBase + 130 * kPage}});
  ASSERT_TRUE(s) << s.error().message;
  Stage& st = *s.value();
  EXPECT_EQ(st.total_pages(), 66u);
  ASSERT_TRUE(st.put(1, kBase + 4 * kPage, 2, pages_of(0xab, 2)).ok());
  ASSERT_TRUE(st.put(1, kBase + 129 * kPage, 1, pages_of(0xcd, 1)).ok());
  ASSERT_NE(st.page(kBase + 5 * kPage), nullptr);
  EXPECT_EQ(st.page(kBase + 5 * kPage)[100], std::byte(0xab));
  EXPECT_EQ(st.page(kBase + 129 * kPage)[0], std::byte(0xcd));
  EXPECT_EQ(st.page(kBase + 6 * kPage), nullptr) << "never sent";
  EXPECT_EQ(st.held_pages(), 3u);
}

TEST(Stage, ALaterRoundWinsAndALateEarlierOneDoesNot) {
  auto s = Stage::create({{kBase, kBase + 8 * kPage}});
  ASSERT_TRUE(s);
  Stage& st = *s.value();
  ASSERT_TRUE(st.put(1, kBase, 1, pages_of(1, 1)).ok());
  ASSERT_TRUE(st.put(2, kBase, 1, pages_of(2, 1)).ok());
  ASSERT_TRUE(st.put(1, kBase, 1, pages_of(1, 1)).ok());  // a duplicate of round 1, late
  EXPECT_EQ(st.page(kBase)[0], std::byte(2));
  EXPECT_EQ(st.held_pages(), 1u);
}

TEST(Stage, ReleasedPagesAreGoneForGood) {
  auto s = Stage::create({{kBase, kBase + 8 * kPage}});
  ASSERT_TRUE(s);
  Stage& st = *s.value();
  ASSERT_TRUE(st.put(1, kBase, 4, pages_of(7, 4)).ok());
  st.release(kBase + kPage, 2);
  EXPECT_EQ(st.page(kBase + kPage), nullptr);
  EXPECT_NE(st.page(kBase), nullptr);
  EXPECT_EQ(st.held_pages(), 2u);
  ASSERT_TRUE(st.put(3, kBase + kPage, 1, pages_of(9, 1)).ok());
  EXPECT_EQ(st.page(kBase + kPage), nullptr) << "installed already: a late copy is not taken";
}

TEST(Stage, RefusesWhatDoesNotFit) {
  auto s = Stage::create({{kBase, kBase + 8 * kPage}});
  ASSERT_TRUE(s);
  Stage& st = *s.value();
  EXPECT_FALSE(st.put(1, kBase + 7 * kPage, 2, pages_of(0, 2)).ok()) << "runs past the end";
  EXPECT_FALSE(st.put(1, kBase + 1, 1, pages_of(0, 1)).ok()) << "unaligned";
  EXPECT_FALSE(st.put(1, kBase, 2, pages_of(0, 1)).ok()) << "short data";
  EXPECT_FALSE(st.put(0, kBase, 1, pages_of(0, 1)).ok()) << "round 0";
  EXPECT_FALSE(st.put(1, kBase - kPage, 1, pages_of(0, 1)).ok()) << "before the start";
  EXPECT_EQ(st.held_pages(), 0u);
  EXPECT_FALSE(Stage::create({{kBase, kBase}}).ok());
  EXPECT_FALSE(Stage::create({{kBase, kBase + 2 * kPage}, {kBase + kPage, kBase + 3 * kPage}}).ok()) << "overlap";
}

}  // namespace
}  // namespace ferry::xmm
