// FaultPlan: which rule fires where, how often, and what is refused.
#include "dipc/faults.h"

#include <gtest/gtest.h>

namespace ferry::dipc {
namespace {

FaultPlan plan() {
  FaultPlan p;
  p.declare({"offer", FaultSite::kRequestIn, 11, "offer arrives", "agent@n2"});
  p.declare({"page-reply", FaultSite::kReplyOut, 22, "page reply leaves", "pager@n1"});
  p.declare({"prefetch", FaultSite::kReplyOut, 22, "prefetch reply leaves", "pager-bulk@n1"});
  p.declare({"freeze", FaultSite::kLocal, 0, "frozen", ""});
  return p;
}

TEST(FaultPlan, InertUntilARuleIsSet) {
  auto p = plan();
  EXPECT_FALSE(p.armed());
  EXPECT_FALSE(p.take(FaultSite::kRequestIn, 11, "agent@n2"));
  EXPECT_FALSE(p.take("freeze"));
}

TEST(FaultPlan, ARuleFiresItsCountThenIsGone) {
  auto p = plan();
  ASSERT_TRUE(p.set({"offer", FaultAction::kDrop, std::chrono::milliseconds(0), 2}));
  EXPECT_FALSE(p.take(FaultSite::kRequestIn, 12, "agent@n2")) << "another message type";
  EXPECT_FALSE(p.take(FaultSite::kReplyIn, 11, "agent@n2")) << "another site";
  EXPECT_TRUE(p.take(FaultSite::kRequestIn, 11, "agent@n2"));
  EXPECT_TRUE(p.take(FaultSite::kRequestIn, 11, "agent@n2"));
  EXPECT_FALSE(p.take(FaultSite::kRequestIn, 11, "agent@n2"));
  EXPECT_FALSE(p.armed());
}

TEST(FaultPlan, CountZeroFiresEveryTime) {
  auto p = plan();
  ASSERT_TRUE(p.set({"offer", FaultAction::kDuplicate, std::chrono::milliseconds(0), 0}));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(p.take(FaultSite::kRequestIn, 11, "agent@n2"));
  p.clear("offer");
  EXPECT_FALSE(p.take(FaultSite::kRequestIn, 11, "agent@n2"));
}

TEST(FaultPlan, OnePlanSharedByTwoPortsTellsTheirPointsApart) {
  auto p = plan();
  ASSERT_TRUE(p.set({"prefetch", FaultAction::kDelay, std::chrono::milliseconds(100), 1}));
  EXPECT_FALSE(p.take(FaultSite::kReplyOut, 22, "pager@n1")) << "the fault port's replies are page-reply";
  auto r = p.take(FaultSite::kReplyOut, 22, "pager-bulk@n1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->action, FaultAction::kDelay);
  EXPECT_EQ(r->delay.count(), 100);
}

TEST(FaultPlan, RefusesWhatCannotApply) {
  auto p = plan();
  auto unknown = p.set({"nowhere", FaultAction::kCrash, std::chrono::milliseconds(0), 1});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  EXPECT_NE(unknown.error().message.find("offer"), std::string::npos) << "names the points there are";
  EXPECT_FALSE(p.set({"freeze", FaultAction::kDrop, std::chrono::milliseconds(0), 1})) << "a step carries no message";
  EXPECT_FALSE(p.set({"offer", FaultAction::kDelay, std::chrono::milliseconds(0), 1})) << "a delay needs a duration";
  EXPECT_TRUE(p.set({"freeze", FaultAction::kDelay, std::chrono::milliseconds(5), 1}));
  EXPECT_TRUE(p.armed());
}

TEST(FaultPlan, ActionNamesRoundTrip) {
  for (auto a : {FaultAction::kCrash, FaultAction::kDrop, FaultAction::kDelay, FaultAction::kDuplicate})
    EXPECT_EQ(parse_fault_action(fault_action_name(a)), a);
  EXPECT_FALSE(parse_fault_action("explode"));
}

}  // namespace
}  // namespace ferry::dipc
