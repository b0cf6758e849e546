// A job's own pid namespace (pm/job_namespace.h): a job keeps its pid wherever it moves, so
// getpid(), gettid(), /proc/self and glibc's cached tid (raise) agree after every move; `ferry
// ps` shows that pid; the namespace's init goes when the job ends and leaves nothing behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include "tests/migrate/cluster_fixture.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

class Jobs : public ClusterTest {
 protected:
  Jobs() : ClusterTest("jb", 2) {}
};

// A process's pids from ours down to its own namespace (/proc/PID/status NSpid).
std::vector<int> namespace_pids_of(int pid) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("NSpid:", 0) == 0) {
      std::istringstream f(line.substr(6));
      std::vector<int> out;
      for (int p; f >> p;) out.push_back(p);
      return out;
    }
  return {};
}

// Processes named ferry-job-init whose parent is `parent`.
int inits_of(int parent) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string stat = slurp(e.path() / "stat");
    auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    if (stat.substr(open + 1, close - open - 1) != "ferry-job-init") continue;
    if (std::atoi(stat.c_str() + close + 4) == parent) ++n;
  }
  return n;
}

TEST_F(Jobs, AJobKeepsItsPidAndProcSelfAcrossMoves) {
  constexpr int kRounds = 300;
  uint64_t gpid = start({program("pid_keeper"), std::to_string(kRounds), "10"});
  ASSERT_NE(gpid, 0u);
  auto first = info(gpid);
  ASSERT_TRUE(first.contains("job_pid")) << first.dump();
  uint32_t job_pid = first["job_pid"];
  EXPECT_GT(job_pid, 1u) << "pid 1 is the job's init";
  EXPECT_NE(uint32_t(first["pid"]), job_pid) << "the job is not in a namespace of its own";

  std::mt19937 rng(std::random_device{}());
  const char* modes[] = {"", "--eager", "", "--precopy=2", ""};
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 250));
    std::vector<std::string> args{"migrate", std::to_string(gpid), "--to", i % 2 == 0 ? "n2" : "n1"};
    if (*modes[i]) args.push_back(modes[i]);
    auto m = cluster.run(args);
    ASSERT_EQ(m.status, 0) << "move " << i << ": " << m.err;
    auto now = info(gpid);
    EXPECT_EQ(uint32_t(now["job_pid"]), job_pid) << "ps shows another pid inside the job after move " << i;
  }
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  std::string expected = "pid in its namespace: small\n";
  for (int i = 0; i < kRounds; ++i) expected += "round " + std::to_string(i) + ": ok\n";
  expect_same_lines(slurp(info(gpid)["output"].get<std::string>()), expected);
}

// `ferry checkpoint` of a job's process and `ferry restore`: it comes back in a namespace of
// its own, with its pid there, and goes on as if nothing happened.
TEST_F(Jobs, ACheckpointedJobIsRestoredWithItsPid) {
  constexpr int kRounds = 150;
  uint64_t gpid = start({program("pid_keeper"), std::to_string(kRounds), "10"});
  ASSERT_NE(gpid, 0u);
  auto p = info(gpid);
  std::string output = p["output"];
  std::this_thread::sleep_for(300ms);
  std::string dir = (cluster.dir() / "ck").string();
  auto c = cluster.run({"checkpoint", std::to_string(int(p["pid"])), "--dir", dir});
  ASSERT_EQ(c.status, 0) << c.err;
  cluster.run({"wait", std::to_string(gpid)});  // ended by the checkpoint
  auto r = cluster.run({"restore", "--dir", dir});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "") << "a job's pid is always free in a new namespace: no warning";
  int restored = std::atoi(r.out.c_str());
  ASSERT_GT(restored, 0);
  auto ns = namespace_pids_of(restored);
  ASSERT_EQ(ns.size(), 2u) << "not restored in a namespace of its own";
  EXPECT_EQ(ns[1], int(p["job_pid"]));
  for (int i = 0; i < 3000 && process_alive(restored); ++i) std::this_thread::sleep_for(10ms);
  std::string expected = "pid in its namespace: small\n";
  for (int i = 0; i < kRounds; ++i) expected += "round " + std::to_string(i) + ": ok\n";
  expect_same_lines(slurp(output), expected);
}

TEST_F(Jobs, TheNamespaceEndsWithTheJobAndLeavesNothing) {
  auto pids = cluster.daemon_pids();
  uint64_t gpid = start({program("counter"), "100000", "10"});
  ASSERT_NE(gpid, 0u);
  auto p = info(gpid);
  int pid = p["pid"];
  EXPECT_EQ(p["job_pid"], 2) << "the first process of a new namespace after its init";
  // Moved once: the source's namespace goes with the memory shell, the destination has one.
  auto m = cluster.run({"migrate", std::to_string(gpid), "--to", "n2", "--wait"});
  ASSERT_EQ(m.status, 0) << m.err;
  int moved = info(gpid)["pid"];
  EXPECT_TRUE(process_alive(moved));
  auto k = cluster.run({"kill", "-KILL", std::to_string(gpid)});
  ASSERT_EQ(k.status, 0) << k.err;
  cluster.run({"wait", std::to_string(gpid)});
  // Every agent has reaped the inits of its namespaces within a few seconds.
  auto deadline = std::chrono::steady_clock::now() + 20s;
  int left = 0;
  do {
    left = 0;
    for (int d : pids) left += inits_of(d);
    if (left == 0) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(left, 0) << "inits of ended jobs are still there (or zombies)";
  EXPECT_FALSE(process_alive(pid));
  EXPECT_FALSE(process_alive(moved));
}

}  // namespace
}  // namespace ferry::testing
