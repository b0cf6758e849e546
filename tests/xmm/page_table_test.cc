// PageTable (xmm/page_table.h): page states of an import as the importer moves them, without
// I/O: presence learnt after the start, staged pages, prefetch order.
#include "xmm/page_table.h"

#include <gtest/gtest.h>

namespace ferry::xmm {
namespace {

constexpr uint64_t kPage = PageTable::kPage;
constexpr uint64_t kBase = 0x100000000ull;

std::vector<uint8_t> bits(size_t pages, std::initializer_list<size_t> set) {
  std::vector<uint8_t> v((pages + 7) / 8, 0);
  for (size_t i : set) v[i / 8] |= uint8_t(1u << (i % 8));
  return v;
}

TEST(PageTable, BeforePresenceIsKnownEveryPageIsAskedForAndNothingIsComplete) {
  PageTable t({{kBase, kBase + 16 * kPage}});
  EXPECT_FALSE(t.presence_known());
  EXPECT_EQ(t.state(kBase + 5 * kPage), PageState::kNeed);
  EXPECT_EQ(t.outstanding(), 16u);
  EXPECT_FALSE(t.state(kBase + 16 * kPage).has_value());
}

TEST(PageTable, PresenceLearntLaterKeepsWhatWasFetchedMeanwhile) {
  PageTable t({{kBase, kBase + 16 * kPage}});
  t.set(kBase + 1 * kPage, 1, PageState::kInFlight);  // a fault before the map came
  t.set(kBase + 2 * kPage, 1, PageState::kHere);
  t.apply_presence(bits(16, {1, 2, 3, 9}));
  EXPECT_TRUE(t.presence_known());
  EXPECT_EQ(t.state(kBase + 0 * kPage), PageState::kZero);
  EXPECT_EQ(t.state(kBase + 1 * kPage), PageState::kInFlight);
  EXPECT_EQ(t.state(kBase + 2 * kPage), PageState::kHere);
  EXPECT_EQ(t.state(kBase + 3 * kPage), PageState::kNeed);
  EXPECT_EQ(t.state(kBase + 9 * kPage), PageState::kNeed);
  EXPECT_EQ(t.present_pages(), 4u);
  EXPECT_EQ(t.outstanding(), 3u);  // 1 in flight, 3 and 9 needed
}

TEST(PageTable, StagedPagesAreNeitherPrefetchedNorCompleteUntilInstalled) {
  PageTable t({{kBase, kBase + 8 * kPage}}, bits(8, {0, 1, 2, 3, 4}), bits(8, {1, 2, 4}));
  EXPECT_EQ(t.staged(), 3u);
  EXPECT_EQ(t.outstanding(), 5u);
  auto need = t.next_needed(kBase, 8);
  ASSERT_TRUE(need);
  EXPECT_EQ(need->address, kBase);
  EXPECT_EQ(need->pages, 1u) << "page 1 is staged: not fetched";
  auto staged = t.next_staged(8);
  ASSERT_TRUE(staged);
  EXPECT_EQ(staged->address, kBase + kPage);
  EXPECT_EQ(staged->pages, 2u);
  t.set(staged->address, staged->pages, PageState::kHere);
  staged = t.next_staged(8);
  ASSERT_TRUE(staged);
  EXPECT_EQ(staged->address, kBase + 4 * kPage);
  t.set(staged->address, 1, PageState::kHere);
  EXPECT_FALSE(t.next_staged(8));
  EXPECT_EQ(t.staged(), 0u);
  // A staged page the stage turned out not to hold goes back to the source.
  PageTable u({{kBase, kBase + 4 * kPage}}, bits(4, {0, 1}), bits(4, {0, 1}));
  u.set(kBase, 1, PageState::kNeed);
  EXPECT_EQ(u.staged(), 1u);
  EXPECT_EQ(u.next_needed(kBase, 4)->address, kBase);
}

TEST(PageTable, PresenceBitsFollowTheSourceOrderAcrossARemap) {
  // Two ranges; the second is moved (mremap) before presence arrives.
  PageTable t({{kBase, kBase + 4 * kPage}, {kBase + 8 * kPage, kBase + 12 * kPage}});
  t.move(kBase + 8 * kPage, kBase + 100 * kPage, 4 * kPage);
  t.apply_presence(bits(8, {0, 5}));  // page 0 of range 1, page 1 of range 2
  EXPECT_EQ(t.state(kBase), PageState::kNeed);
  EXPECT_EQ(t.state(kBase + 1 * kPage), PageState::kZero);
  EXPECT_EQ(t.state(kBase + 101 * kPage), PageState::kNeed);
  EXPECT_EQ(t.state(kBase + 100 * kPage), PageState::kZero);
  EXPECT_EQ(t.run_at(kBase + 101 * kPage, 1)->source, kBase + 9 * kPage);
}

}  // namespace
}  // namespace ferry::xmm

namespace ferry::xmm {
namespace {

TEST(PageTable, PresenceAppliedInStepsEqualsAllAtOnce) {
  std::vector<PageTable::Range> ranges{{kBase, kBase + 10 * kPage}, {kBase + 20 * kPage, kBase + 27 * kPage}};
  auto present = bits(17, {0, 2, 3, 9, 10, 11, 16});
  auto staged = bits(17, {2, 11});
  PageTable once(ranges, present, staged);
  PageTable steps(ranges);
  steps.set(kBase + 3 * kPage, 1, PageState::kInFlight);  // asked for before the map came
  int calls = 0;
  while (!steps.apply_presence_step(present, staged, 3)) ++calls;
  EXPECT_GE(calls, 4);
  EXPECT_TRUE(steps.presence_known());
  EXPECT_EQ(steps.present_pages(), once.present_pages());
  EXPECT_EQ(steps.staged(), once.staged());
  for (uint64_t a = kBase; a < kBase + 27 * kPage; a += kPage) {
    if (a == kBase + 3 * kPage) {
      EXPECT_EQ(steps.state(a), PageState::kInFlight);
      continue;
    }
    EXPECT_EQ(steps.state(a), once.state(a)) << (a - kBase) / kPage;
  }
}

}  // namespace
}  // namespace ferry::xmm
