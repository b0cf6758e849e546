// The replay guard: each authenticated frame is admitted once; a copy, a frame from before the
// window, one too old, or one from before the receiver started from a sender it does not know,
// is refused with a reason; reordering within the window is fine.
#include "dipc/replay_guard.h"

#include <gtest/gtest.h>

namespace ferry::dipc {
namespace {

constexpr int64_t kStart = 1'000'000'000;

TEST(ReplayGuard, EachFrameIsAdmittedOnceInOrderOrReorderedWithinTheWindow) {
  ReplayGuard g(ReplayPolicy{64, std::chrono::milliseconds(60000)}, kStart);
  int64_t now = kStart + 10;
  for (uint32_t c = 1; c <= 200; c += 2) EXPECT_EQ(g.admit(7, c, now, now), "") << c;  // gaps: frames to others
  for (uint32_t c = 1; c <= 200; c += 2) {
    if (c > 200 - 64) EXPECT_NE(g.admit(7, c, now, now).find("already received"), std::string::npos) << c;
    else EXPECT_NE(g.admit(7, c, now, now).find("beyond the window"), std::string::npos) << c;
  }
  // Late but within the window, once.
  EXPECT_EQ(g.admit(7, 198, now, now), "");
  EXPECT_NE(g.admit(7, 198, now, now), "");
  // Another session counts on its own.
  EXPECT_EQ(g.admit(8, 1, now, now), "");
  EXPECT_NE(g.admit(8, 1, now, now), "");
  // A jump far ahead forgets the old bits, and the old counters are now below the window.
  EXPECT_EQ(g.admit(7, 100000, now, now), "");
  EXPECT_NE(g.admit(7, 199, now, now), "");
  EXPECT_EQ(g.admit(7, 99999, now, now), "");
}

TEST(ReplayGuard, OldFramesAndFramesFromBeforeTheStartAreRefused) {
  ReplayGuard g(ReplayPolicy{1024, std::chrono::milliseconds(60000)}, kStart);
  int64_t now = kStart + 30000;
  EXPECT_NE(g.admit(1, 5, now - 61000, now).find("ms ago"), std::string::npos);
  EXPECT_NE(g.admit(1, 5, now + 61000, now).find("future"), std::string::npos);
  // Unknown session, sent well before this receiver started: a capture replayed after a restart.
  EXPECT_NE(g.admit(2, 5, kStart - 20000, now).find("before this port started"), std::string::npos);
  // Sent just before the start (in flight, clocks a little apart): fine.
  EXPECT_EQ(g.admit(3, 5, kStart - 2000, now), "");
  // A silent session is forgotten after max_age; its old frames are too old by then.
  g.prune(now + 61000);
  EXPECT_EQ(g.sessions(), 0u);
  EXPECT_NE(g.admit(3, 5, kStart - 2000, now + 61000), "");
  EXPECT_EQ(g.admit(3, 6, now + 61000, now + 61000), "");
}

}  // namespace
}  // namespace ferry::dipc
