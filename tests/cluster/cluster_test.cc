// The local cluster, end to end through the real CLI: nodes come up alive, a killed or cut-off
// node is declared dead, clusters run side by side, and `cluster down` leaves nothing behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "cluster_harness.h"
#include "runtime/cluster/netns.h"

namespace ferry::testing {
namespace {

namespace fs = std::filesystem;

std::string unique_name(const std::string& prefix) {
  std::random_device rd;
  return prefix + std::to_string(rd() % 100000);
}

void expect_all_gone(const std::vector<int>& pids) {
  for (int pid : pids) EXPECT_FALSE(process_alive(pid)) << "daemon pid " << pid << " still runs";
}

TEST(Cluster, UpListsEveryNodeAliveAndDownLeavesNothing) {
  TestCluster c(unique_name("up"));
  auto up = c.up({"--nodes", "3"});
  ASSERT_EQ(up.status, 0) << up.err;
  auto nodes = c.nodes_json();
  ASSERT_EQ(nodes.size(), 3u) << nodes.dump();
  for (int k = 1; k <= 3; ++k) {
    const auto& n = nodes[size_t(k - 1)];
    std::string name = "n" + std::to_string(k);
    EXPECT_EQ(n["name"], name);
    EXPECT_EQ(n["state"], "alive");
    EXPECT_EQ(n["address"].get<std::string>().rfind("127.0.0." + std::to_string(k + 1) + ":", 0), 0u) << n.dump();
    std::vector<std::string> ports;
    for (const auto& p : n["ports"]) ports.push_back(p["name"]);
    EXPECT_EQ(ports, (std::vector<std::string>{"agent@" + name, "pager-bulk@" + name, "pager@" + name}));
  }
  // Ports answer across nodes through the fabric (n1's agent pings n3's pager and the master).
  auto ping = c.run({"--node", "n1", "ping", "pager@n3", "--count", "5", "--size", "4096"});
  EXPECT_EQ(ping.status, 0) << ping.out << ping.err;
  EXPECT_NE(ping.out.find("5 of 5 answered"), std::string::npos) << ping.out;
  EXPECT_EQ(c.run({"ping", "master", "--count", "2"}).status, 0);

  auto pids = c.daemon_pids();
  ASSERT_EQ(pids.size(), 7u);
  auto down = c.down();
  ASSERT_EQ(down.status, 0) << down.err;
  EXPECT_NE(down.out.find("stopped 7 daemons"), std::string::npos) << down.out;
  EXPECT_EQ(down.out.find("SIGKILL"), std::string::npos) << "daemons did not stop on SIGTERM: " << down.out;
  expect_all_gone(pids);
  EXPECT_FALSE(fs::exists(c.dir())) << "state directory left behind";
}

TEST(Cluster, KilledNodeIsDeclaredDeadAndItsPortsUnreachable) {
  TestCluster c(unique_name("kill"));
  ASSERT_EQ(c.up({"--nodes", "3", "--heartbeat-ms", "100"}).status, 0);
  auto manifest = c.manifest();
  auto killed_at = std::chrono::steady_clock::now();
  for (const auto& d : manifest["daemons"])
    if (d["node"] == "n2") {
      ASSERT_EQ(kill(d["pid"].get<int>(), SIGKILL), 0);
    }

  // Bound (docs/FAILURES.md): dead-limit + probe + heartbeat = 1800 + 400 + 100 ms here.
  EXPECT_EQ(c.wait_for_state("n2", "dead", 10000), "dead");
  std::printf("n2 declared dead %lld ms after its daemons were killed (heartbeat 100 ms)\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - killed_at)
                                         .count()));
  EXPECT_EQ(c.wait_for_state("n1", "alive", 1000), "alive");
  EXPECT_EQ(c.wait_for_state("n3", "alive", 1000), "alive");

  // A request to a dead port fails with an error naming it; it does not hang.
  auto t0 = std::chrono::steady_clock::now();
  auto ping = c.run({"--node", "n1", "ping", "agent@n2", "--count", "1"});
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_NE(ping.status, 0);
  EXPECT_NE(ping.out.find("agent@n2"), std::string::npos) << ping.out << ping.err;
  EXPECT_LT(took, std::chrono::seconds(15));

  auto down = c.down();
  EXPECT_EQ(down.status, 0) << down.err;
  expect_all_gone(c.daemon_pids());
}

TEST(Cluster, DaemonStopsCleanlyOnSigterm) {
  TestCluster c(unique_name("term"));
  ASSERT_EQ(c.up({"--nodes", "2"}).status, 0);
  int pager = 0;
  auto manifest = c.manifest();
  for (const auto& d : manifest["daemons"])
    if (d["node"] == "n2" && d["role"] == "pager") pager = d["pid"];
  ASSERT_GT(pager, 0);
  ASSERT_EQ(kill(pager, SIGTERM), 0);
  for (int i = 0; i < 200 && process_alive(pager); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(process_alive(pager));
  EXPECT_FALSE(fs::exists(c.dir() / "n2" / "pager.sock")) << "socket left behind";
  EXPECT_FALSE(fs::exists(c.dir() / "n2" / "pager.pid")) << "pid file left behind";
  // It told the master it left: n2 lists only its agent now.
  std::vector<std::string> ports;
  for (const auto& n : c.nodes_json())
    if (n["name"] == "n2")
      for (const auto& p : n["ports"]) ports.push_back(p["name"]);
  EXPECT_EQ(ports, std::vector<std::string>{"agent@n2"});
  EXPECT_EQ(c.down().status, 0);
}

TEST(Cluster, TwoClustersRunSideBySide) {
  TestCluster a(unique_name("a")), b(unique_name("b"));
  CommandResult ra, rb;
  std::thread ta([&] { ra = a.up({"--nodes", "2"}); });
  std::thread tb([&] { rb = b.up({"--nodes", "2"}); });
  ta.join();
  tb.join();
  ASSERT_EQ(ra.status, 0) << ra.err;
  ASSERT_EQ(rb.status, 0) << rb.err;
  EXPECT_EQ(a.wait_for_state("n2", "alive", 1000), "alive");
  EXPECT_EQ(b.wait_for_state("n2", "alive", 1000), "alive");
  auto a_pids = a.daemon_pids();
  ASSERT_EQ(a.down().status, 0);
  expect_all_gone(a_pids);
  EXPECT_EQ(b.wait_for_state("n1", "alive", 1000), "alive") << "removing one cluster disturbed the other";
  EXPECT_EQ(b.run({"--node", "n2", "ping", "agent@n1", "--count", "3"}).status, 0);
  ASSERT_EQ(b.down().status, 0);
}

TEST(Cluster, ErrorsNameTheProblem) {
  TestCluster c(unique_name("err"));
  auto nodes = c.run({"nodes"});
  EXPECT_NE(nodes.status, 0);
  EXPECT_NE(nodes.err.find("is the cluster up"), std::string::npos) << nodes.err;
  auto down = c.down();
  EXPECT_NE(down.status, 0);
  EXPECT_NE(down.err.find("no cluster named " + c.name()), std::string::npos) << down.err;

  ASSERT_EQ(c.up({"--nodes", "1"}).status, 0);
  auto again = c.up({"--nodes", "1"});
  EXPECT_NE(again.status, 0);
  EXPECT_NE(again.err.find("already up"), std::string::npos) << again.err;
  auto unknown = c.run({"ping", "agent@n9", "--count", "1"});
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE((unknown.out + unknown.err).find("agent@n9"), std::string::npos) << unknown.out << unknown.err;
  EXPECT_EQ(c.nodes_json().size(), 1u) << "a failed `up` must not disturb the running cluster";
  EXPECT_EQ(c.down().status, 0);

  auto bad = TestCluster("Bad_Name").up();
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("cluster name"), std::string::npos) << bad.err;
}

TEST(ClusterNetns, NodesInNamespacesCanBeCutAndAreRemoved) {
  if (geteuid() != 0) GTEST_SKIP() << "network namespaces need root";
  TestCluster c(unique_name("ns"));
  auto up = c.up({"--nodes", "2", "--netns", "--heartbeat-ms", "100"});
  ASSERT_EQ(up.status, 0) << up.err;
  std::string prefix = "fy-" + c.name() + "-";
  EXPECT_EQ(namespaces_with_prefix(prefix).size(), 3u);
  auto nodes = c.nodes_json();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0]["address"].get<std::string>().rfind("10.77.0.2:", 0), 0u) << nodes.dump();
  EXPECT_EQ(c.run({"--node", "n1", "ping", "agent@n2", "--count", "3"}).status, 0);

  // Cutting n2's link makes it dead although its daemons run; restoring it brings it back.
  auto topo = runtime::NetnsTopology::plan(c.name(), 2);
  ASSERT_TRUE(runtime::set_node_link(topo, "n2", false).ok());
  EXPECT_EQ(c.wait_for_state("n2", "dead", 10000), "dead");
  EXPECT_EQ(c.wait_for_state("n1", "alive", 1000), "alive");
  ASSERT_TRUE(runtime::set_node_link(topo, "n2", true).ok());
  EXPECT_EQ(c.wait_for_state("n2", "alive", 10000), "alive");

  auto pids = c.daemon_pids();
  auto down = c.down();
  ASSERT_EQ(down.status, 0) << down.err;
  EXPECT_NE(down.out.find("removed 3 network namespaces"), std::string::npos) << down.out;
  EXPECT_TRUE(namespaces_with_prefix(prefix).empty());
  expect_all_gone(pids);
}

}  // namespace
}  // namespace ferry::testing
