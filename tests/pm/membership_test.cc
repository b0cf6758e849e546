// Node liveness as the master judges it from heartbeats (a pure function of the port table).
#include "pm/membership.h"

#include <gtest/gtest.h>

namespace ferry::pm {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

dipc::PortRecord port(const std::string& name, const std::string& node, Clock::time_point heard) {
  dipc::PortRecord r;
  r.name = name;
  r.node = node;
  r.address_text = name + "-addr";
  r.last_heard = heard;
  return r;
}

TEST(NodeStates, JudgesEachNodeByItsLeastRecentlyHeardPort) {
  auto now = Clock::now();
  MembershipPolicy policy{.suspect_after = 1500ms, .dead_after = 3000ms};
  auto nodes = node_states({port("master", "", now - 10s), port("agent@n1", "n1", now - 100ms),
                            port("pager@n1", "n1", now - 200ms), port("agent@n2", "n2", now - 100ms),
                            port("pager@n2", "n2", now - 2s), port("agent@n3", "n3", now - 4s)},
                           policy, now);
  ASSERT_EQ(nodes.size(), 3u) << "the master is not a node";
  EXPECT_EQ(nodes[0].name, "n1");
  EXPECT_EQ(nodes[0].state, wire::NodeState::ALIVE);
  EXPECT_EQ(nodes[0].heartbeat_age, 200ms);
  EXPECT_EQ(nodes[0].address, "agent@n1-addr") << "a node is addressed by its agent";
  EXPECT_EQ(nodes[1].state, wire::NodeState::SUSPECT) << "one late port makes the node suspect";
  EXPECT_EQ(nodes[2].state, wire::NodeState::SUSPECT) << "silence alone never makes a node dead: a probe must fail";
}

TEST(NodeStates, SortsNodesNumerically) {
  auto now = Clock::now();
  auto nodes = node_states({port("agent@n10", "n10", now), port("agent@n2", "n2", now), port("agent@n1", "n1", now)},
                           MembershipPolicy{}, now);
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_EQ(nodes[0].name, "n1");
  EXPECT_EQ(nodes[1].name, "n2");
  EXPECT_EQ(nodes[2].name, "n10");
}

TEST(NodeStates, BoundariesAreExclusive) {
  auto now = Clock::now();
  MembershipPolicy policy{.suspect_after = 1000ms, .dead_after = 2000ms};
  auto at = [&](std::chrono::milliseconds age) {
    return node_states({port("agent@n1", "n1", now - age)}, policy, now).at(0).state;
  };
  EXPECT_EQ(at(1000ms), wire::NodeState::ALIVE);
  EXPECT_EQ(at(1001ms), wire::NodeState::SUSPECT);
  EXPECT_EQ(at(20000ms), wire::NodeState::SUSPECT);
}

}  // namespace
}  // namespace ferry::pm
