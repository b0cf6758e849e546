// A migration test with a local cluster of its own, and what such tests ask of it: a job's
// entry in `ferry ps`, starting a job, its output, and comparing outputs line by line.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "tests/cluster/cluster_harness.h"
#include "tests/migrate/job_output.h"

namespace ferry::testing {

// The first line that differs says what went wrong (a whole output would bury it).
inline void expect_same_lines(const std::string& got, const std::string& expected) {
  std::istringstream a(got), b(expected);
  std::string la, lb;
  for (int line = 1; std::getline(b, lb); ++line) {
    bool more = bool(std::getline(a, la));
    ASSERT_TRUE(more && la == lb) << "line " << line << ": expected '" << lb << "', got '" << (more ? la : "<end>") << "'";
  }
  EXPECT_FALSE(std::getline(a, la)) << "more output than expected: '" << la << "'";
}

class ClusterTest : public ::testing::Test {
 protected:
  // A cluster named `prefix` and this test binary's pid, of `nodes` nodes, up for each test.
  ClusterTest(const std::string& prefix, int nodes) : cluster(prefix + std::to_string(getpid())), nodes_(nodes) {}
  void SetUp() override {
    auto r = cluster.up({"--nodes", std::to_string(nodes_)});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  // A failed test prints what its daemons warned of and were doing, so that a failure far
  // away (CI) says why.
  void TearDown() override {
    if (HasFailure()) print_daemon_logs(cluster.dir());
  }
  // The job's entry in `ferry ps --json` (null if there is none).
  nlohmann::json info(uint64_t gpid) {
    auto r = cluster.run({"ps", "--json"});
    for (const auto& p : nlohmann::json::parse(r.out.empty() ? "[]" : r.out))
      if (p["gpid"] == gpid) return p;
    return {};
  }
  // `ferry run -d` on `node`: the job's gpid (0, and a failed expectation, if it did not start).
  uint64_t start(const std::vector<std::string>& argv, const std::string& node = "n1") {
    std::vector<std::string> args{"run", "--node", node, "-d", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    auto r = cluster.run(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return std::strtoull(r.out.c_str(), nullptr, 10);
  }
  std::string output(uint64_t gpid) { return slurp(info(gpid)["output"].get<std::string>()); }
  // Moves the job `moves` times at random moments (n2, n3, ..., n1, n2, ...; a mode of `modes`
  // each, in turn); stops early if it has ended. Returns the moves made.
  int move_around(uint64_t gpid, int moves, const std::vector<std::string>& modes) {
    std::mt19937 rng(std::random_device{}());
    int made = 0;
    for (int i = 0; i < moves; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 300));
      std::string to = "n" + std::to_string((i + 1) % nodes_ + 1);
      std::vector<std::string> args{"migrate", std::to_string(gpid), "--to", to};
      if (!modes[i % modes.size()].empty()) args.push_back(modes[i % modes.size()]);
      auto m = cluster.run(args);
      if (m.status != 0 && info(gpid)["state"] != "running") break;  // it finished first
      EXPECT_EQ(m.status, 0) << "move " << i << ": " << m.err;
      if (m.status != 0) break;
      ++made;
    }
    return made;
  }

  // What most corpus tests check: `argv` run undisturbed here, then as a job on n1 that, after
  // `settle`, is moved `moves` times at random moments (move_around), ends with status 0 and
  // prints the same, line for line. Returns the undisturbed output for further checks.
  std::string expect_same_output_after_moves(const std::vector<std::string>& argv, int moves,
                                             const std::vector<std::string>& modes,
                                             std::chrono::milliseconds settle = std::chrono::milliseconds(0)) {
    std::string reference = undisturbed(argv);
    uint64_t gpid = start(argv);
    if (gpid == 0) return reference;
    std::this_thread::sleep_for(settle);
    EXPECT_EQ(move_around(gpid, moves, modes), moves) << "it ended before " << moves << " moves";
    auto w = cluster.run({"wait", std::to_string(gpid)});
    EXPECT_EQ(w.status, 0) << w.out << w.err;
    expect_same_lines(output(gpid), reference);
    return reference;
  }

  TestCluster cluster;

 private:
  int nodes_;
};

}  // namespace ferry::testing
