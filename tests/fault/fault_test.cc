// A node killed around a migration: what the user must see. The source dying after the commit
// while pages are remote loses the job, within a bounded time, with the reason and the count of
// pages that never arrived; once the last page has arrived, the source no longer matters.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tests/cluster/cluster_harness.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

std::string program(const std::string& name) { return std::string(FERRY_PROGRAMS_DIR) + "/" + name; }

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class NodeDies : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = cluster.up({"--nodes", "3"});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  nlohmann::json info(uint64_t gpid) {
    auto r = cluster.run({"ps", "--json"});
    for (const auto& p : nlohmann::json::parse(r.out.empty() ? "[]" : r.out))
      if (p["gpid"] == gpid) return p;
    return {};
  }
  uint64_t start_job(const std::vector<std::string>& argv) {
    std::vector<std::string> args{"run", "--node", "n1", "-d", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    auto r = cluster.run(args);
    EXPECT_EQ(r.status, 0) << r.err;
    uint64_t gpid = std::strtoull(r.out.c_str(), nullptr, 10);
    for (int i = 0; i < 1000 && slurp(info(gpid)["output"]).find("round 0 ") == std::string::npos; ++i)
      std::this_thread::sleep_for(10ms);
    return gpid;
  }
  TestCluster cluster{"fd" + std::to_string(getpid())};
};

TEST_F(NodeDies, SourceDiesAfterCommitWhilePagesAreRemote) {
  uint64_t gpid = start_job({program("checksum_heap"), "2048", "200"});
  auto m = cluster.run({"migrate", std::to_string(gpid), "--to", "n2"});
  ASSERT_EQ(m.status, 0) << m.err;
  ASSERT_EQ(cluster.run({"cluster", "kill", "n1"}).status, 0);
  auto killed_at = std::chrono::steady_clock::now();
  auto w = cluster.run({"wait", std::to_string(gpid)});
  auto took = std::chrono::steady_clock::now() - killed_at;
  EXPECT_EQ(w.status, 1);
  EXPECT_NE(w.err.find("lost"), std::string::npos) << w.err;
  EXPECT_NE(w.err.find("pager@n1"), std::string::npos) << w.err;
  EXPECT_NE(w.err.find("pages never arrived"), std::string::npos) << w.err;
  EXPECT_LT(took, 20s) << "the job must not hang on a fault";
  auto p = info(gpid);
  EXPECT_EQ(p["state"], "lost");
  EXPECT_EQ(p["node"], "n2");
  // Nothing of it is left on the surviving node.
  int pid = p["pid"];
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/cmdline");
  EXPECT_EQ(stat.find("checksum_heap"), std::string::npos) << "the lost job's process is still there";
}

TEST_F(NodeDies, SourceDiesAfterTheLastPageArrived) {
  std::vector<std::string> argv{program("checksum_heap"), "256", "120"};
  std::string reference;
  {
    FILE* f = popen((argv[0] + " 256 120").c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) reference.append(buf, n);
    pclose(f);
  }
  uint64_t gpid = start_job(argv);
  auto m = cluster.run({"migrate", std::to_string(gpid), "--to", "n2", "--wait"});
  ASSERT_EQ(m.status, 0) << m.err;
  ASSERT_EQ(cluster.run({"cluster", "kill", "n1"}).status, 0);
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.err;
  EXPECT_EQ(slurp(info(gpid)["output"]), reference);
}

// Bad input: each a clear error naming the problem, and nothing changes.
TEST_F(NodeDies, BadInputIsRefusedClearlyAndChangesNothing) {
  uint64_t gpid = start_job({program("checksum_heap"), "32", "400"});
  auto g = std::to_string(gpid);
  ASSERT_EQ(cluster.run({"cluster", "kill", "n3"}).status, 0);
  ASSERT_EQ(cluster.wait_for_state("n3", "dead", 15000), "dead");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"migrate", g, "--to", "n3"}, "n3"},                      // a dead node
      {{"migrate", g, "--to", "n9"}, "n9"},                      // an unknown node
      {{"migrate", g, "--to", "n1"}, "already on n1"},           // where it is
      {{"migrate", "999999", "--to", "n2"}, "999999"},           // an unknown gpid
      {{"kill", "-TERM", "999999"}, "999999"},
      {{"migrate", "not-a-gpid", "--to", "n2"}, "gpid"},         // malformed arguments
      {{"migrate", g}, "--to"},
      {{"kill", "-NOSUCHSIG", g}, "NOSUCHSIG"},
      {{"fault", "set", "n2", "nowhere", "drop"}, "offer"},      // names the points there are
      {{"fault", "set", "n2", "offer", "explode"}, "explode"},
      {{"fault", "set", "n2", "offer", "delay"}, "--ms"},
      {{"fault", "set", "n2", "freeze", "drop"}, "only crash and delay"},
      {{"fault", "set", "n9", "offer", "drop"}, "n9"},
  };
  for (const auto& c : cases) {
    auto r = cluster.run(c.args);
    std::string all = r.out + r.err;
    std::string cmd;
    for (const auto& a : c.args) cmd += a + " ";
    EXPECT_NE(r.status, 0) << cmd;
    EXPECT_NE(all.find(c.says), std::string::npos) << cmd << "-> " << all;
  }
  // A client without rights may not inject faults.
  std::string cmd = "setpriv --reuid=65534 --regid=65534 --clear-groups env FERRY_STATE_ROOT=" + cluster.root().string() +
                    " " + std::string(FERRY_BIN_DIR) + "/ferry --cluster " + cluster.name() + " fault set n2 offer drop 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[1024];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_NE(pclose(p), 0);
  EXPECT_NE(out.find("root"), std::string::npos) << out;
  // Nothing changed: no fault armed, the job still runs where it was and ends right.
  auto list = cluster.run({"fault", "list", "n2"});
  EXPECT_EQ(list.out.find(" x"), std::string::npos) << list.out;
  EXPECT_EQ(info(gpid)["node"], "n1");
  EXPECT_EQ(info(gpid)["migrations"], 0);
  EXPECT_EQ(cluster.run({"wait", g}).status, 0);
}

// The destination is killed at a random moment of the migration. Either the migration had not
// committed: the job continues on the source and ends with the right checksum; or it had: the
// job is lost with "node n2 died" and no copy runs on the source. Never two, never silently none.
TEST(DestinationDies, AtARandomMomentOfTheMigration) {
  std::vector<std::string> argv{program("checksum_heap"), "64", "150"};
  std::string reference;
  {
    FILE* f = popen((argv[0] + " 64 150").c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) reference.append(buf, n);
    pclose(f);
  }
  std::mt19937 rng(std::random_device{}());
  int continued = 0, lost = 0;
  for (int trial = 0; trial < 4; ++trial) {
    TestCluster c("dd" + std::to_string(getpid()) + std::to_string(trial));
    ASSERT_EQ(c.up({"--nodes", "2"}).status, 0);
    std::vector<std::string> args{"run", "--node", "n1", "-d", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    uint64_t gpid = std::strtoull(c.run(args).out.c_str(), nullptr, 10);
    std::this_thread::sleep_for(300ms);
    // Every other trial kills it just before the migration starts (the master still believes it
    // alive), the others at a random moment during it.
    int delay_ms = trial % 2 == 0 ? -1 : int(rng() % 40);
    CommandResult m;
    if (delay_ms < 0) {
      ASSERT_EQ(c.run({"cluster", "kill", "n2"}).status, 0);
    }
    std::thread mover([&] { m = c.run({"migrate", std::to_string(gpid), "--to", "n2"}); });
    if (delay_ms >= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      ASSERT_EQ(c.run({"cluster", "kill", "n2"}).status, 0);
    }
    mover.join();
    auto w = c.run({"wait", std::to_string(gpid)});
    nlohmann::json p;
    for (const auto& x : nlohmann::json::parse(c.run({"ps", "--json"}).out))
      if (x["gpid"] == gpid) p = x;
    if (p["node"] == "n1") {
      ++continued;
      EXPECT_EQ(w.status, 0) << "trial " << trial << " (kill after " << delay_ms << " ms): " << w.err << m.err;
      EXPECT_EQ(slurp(p["output"]), reference) << "trial " << trial;
    } else {
      ++lost;
      EXPECT_EQ(p["node"], "n2");
      EXPECT_EQ(p["state"], "lost") << "trial " << trial;
      EXPECT_NE(p["reason"].get<std::string>().find("node n2 died"), std::string::npos) << p.dump();
      EXPECT_EQ(m.status, 0) << "a committed migration reports success: " << m.err;
    }
  }
  std::cout << "continued on the source: " << continued << ", lost with the destination: " << lost << "\n";
}

}  // namespace
}  // namespace ferry::testing
