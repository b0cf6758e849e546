// The failure detector's pure parts: phi of a silence given a port's heartbeat history, and the
// judgement of a node's silence (pm/failure_detector.h).
#include "pm/failure_detector.h"

#include <gtest/gtest.h>

#include <random>

namespace ferry::pm {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

HeartbeatHistory regular(std::chrono::milliseconds period, int beats) {
  HeartbeatHistory h(period);
  auto t = Clock::time_point{} + 1s;
  for (int i = 0; i < beats; ++i, t += period) h.heard(t);
  return h;
}

TEST(HeartbeatHistory, PhiGrowsWithSilenceAndIsLowWhenOnTime) {
  auto h = regular(500ms, 50);
  EXPECT_LT(h.phi(0ms), 0.5);
  EXPECT_LT(h.phi(500ms), 0.5);
  EXPECT_LT(h.phi(800ms), h.phi(1200ms));
  EXPECT_GT(h.phi(1500ms), 8.0) << "three periods of silence after perfectly regular heartbeats";
}

TEST(HeartbeatHistory, IrregularHeartbeatsMakeTheSameSilenceLessSuspect) {
  auto calm = regular(500ms, 60);
  HeartbeatHistory jittery(500ms);
  std::mt19937 rng(7);
  auto t = Clock::time_point{} + 1s;
  for (int i = 0; i < 60; ++i) {
    jittery.heard(t);
    t += std::chrono::milliseconds(200 + rng() % 1800);  // a node starved now and then
  }
  EXPECT_GT(calm.phi(2500ms), jittery.phi(2500ms) + 3);
  EXPECT_LT(jittery.phi(2500ms), 8.0) << "a starved node's usual gaps are not taken for death";
}

TEST(HeartbeatHistory, WithoutHistoryTheExpectedPeriodStandsIn) {
  HeartbeatHistory h(500ms);
  h.heard(Clock::time_point{} + 1s);
  EXPECT_EQ(h.samples(), 0u);
  EXPECT_LT(h.phi(400ms), 1.0);
  EXPECT_GT(h.phi(2000ms), 8.0);
}

TEST(Judge, SuspectThenConfirmBetweenTheFloorAndTheLimit) {
  DetectorPolicy p{.heartbeat = 500ms, .suspect_after = 1500ms, .dead_after = 3000ms, .dead_limit = 9000ms,
                   .probe_timeout = 2000ms, .phi_dead = 8.0};
  EXPECT_EQ(judge(1500ms, 20, p), Judgement::kAlive) << "boundaries are exclusive";
  EXPECT_EQ(judge(1501ms, 0, p), Judgement::kSuspect);
  EXPECT_EQ(judge(2900ms, 99, p), Judgement::kSuspect) << "never a candidate before dead_after";
  EXPECT_EQ(judge(3001ms, 7.9, p), Judgement::kSuspect) << "phi too low: only slow so far";
  EXPECT_EQ(judge(3001ms, 8.0, p), Judgement::kConfirm);
  EXPECT_EQ(judge(9001ms, 0, p), Judgement::kConfirm) << "after dead_limit, whatever phi says";
}

}  // namespace
}  // namespace ferry::pm
