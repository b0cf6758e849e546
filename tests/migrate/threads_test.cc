// Multi-threaded jobs across moves: every thread frozen together, captured and rebuilt with its
// tid, its registers, its signals and its place in a futex wait; lazily restored memory served
// to many threads faulting at once; threads being born and dying while the freeze lands.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <sstream>
#include <thread>

#include "tests/cluster/cluster_harness.h"
#include "tests/migrate/job_output.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

class Threads : public ::testing::Test {
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
  uint64_t start(const std::vector<std::string>& argv) {
    std::vector<std::string> args{"run", "--node", "n1", "-d", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    auto r = cluster.run(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return std::strtoull(r.out.c_str(), nullptr, 10);
  }
  // Moves the job `moves` times at random moments (a mode of `modes` each, in turn); stops
  // early if it has ended. Returns the moves made.
  int move_around(uint64_t gpid, int moves, const std::vector<std::string>& modes) {
    std::mt19937 rng(std::random_device{}());
    const char* nodes[] = {"n2", "n3", "n1"};
    int made = 0;
    for (int i = 0; i < moves; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 300));
      std::vector<std::string> args{"migrate", std::to_string(gpid), "--to", nodes[i % 3]};
      if (!modes[i % modes.size()].empty()) args.push_back(modes[i % modes.size()]);
      auto m = cluster.run(args);
      if (m.status != 0 && info(gpid)["state"] != "running") break;  // it finished first
      EXPECT_EQ(m.status, 0) << "move " << i << ": " << m.err;
      if (m.status != 0) break;
      ++made;
    }
    return made;
  }
  std::string output(uint64_t gpid) { return slurp(info(gpid)["output"].get<std::string>()); }
  TestCluster cluster{"th" + std::to_string(getpid())};
};

// The first line that differs says what went wrong (the whole output would bury it).
void expect_same_lines(const std::string& got, const std::string& expected) {
  std::istringstream a(got), b(expected);
  std::string la, lb;
  for (int line = 1; std::getline(b, lb); ++line) {
    bool more = bool(std::getline(a, la));
    ASSERT_TRUE(more && la == lb) << "line " << line << ": expected '" << lb << "', got '" << (more ? la : "<end>") << "'";
  }
  EXPECT_FALSE(std::getline(a, la)) << "more output than expected: '" << la << "'";
}

TEST_F(Threads, EightThreadsMovedFiveTimesPrintWhatAnUnmovedRunPrints) {
  std::vector<std::string> argv{program("thread_rounds"), "8", "250", "10", "64"};
  std::string reference = undisturbed(argv);
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  EXPECT_EQ(move_around(gpid, 5, {"", "--eager", "", "--precopy=2", ""}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

// Sixteen threads each walk their slice of 512 MiB right after a lazy move: the pager serves
// faults from all of them at once.
TEST_F(Threads, SixteenThreadsFaultAtOnceAfterALazyMove) {
  std::vector<std::string> argv{program("thread_rounds"), "16", "12", "200", "512"};
  std::string reference = undisturbed(argv);
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  std::this_thread::sleep_for(700ms);  // the heap is written (round 0 touches every page)
  auto m = cluster.run({"migrate", std::to_string(gpid), "--to", "n2"});
  ASSERT_EQ(m.status, 0) << m.err;
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
  auto s = cluster.run({"stat", std::to_string(gpid), "--json"});
  EXPECT_EQ(s.status, 0) << s.err;
}

// Threads are created and exit all the time: each freeze must catch every thread there is,
// wait for those on their way out, and leave nothing half done.
TEST_F(Threads, ThreadsBornAndDyingDuringTheFreeze) {
  std::vector<std::string> argv{program("thread_churn"), "2500", "8"};
  std::string reference = undisturbed(argv);
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  EXPECT_GE(move_around(gpid, 6, {"", "--eager"}), 3);
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

// A PI mutex held while another thread waits in the kernel, a robust mutex whose owner dies
// holding it, a condition variable: all across five moves (they need the tids kept).
TEST_F(Threads, PiAndRobustMutexesAndAConditionVariableAcrossMoves) {
  std::vector<std::string> argv{program("pthread_sync"), "150", "20"};
  std::string reference = undisturbed(argv);
  ASSERT_NE(reference.find("EOWNERDEAD"), std::string::npos) << reference;
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  EXPECT_EQ(move_around(gpid, 5, {"", "--eager"}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

// A job waiting in an uninterruptible sleep (a vfork parent) cannot be stopped: the migration
// is refused within a bounded time, naming the thread, and the job runs on to its end.
TEST_F(Threads, AThreadInAnUninterruptibleSleepIsRefusedInBoundedTime) {
  uint64_t gpid = start({program("vfork_waiter"), "8"});
  ASSERT_NE(gpid, 0u);
  for (int i = 0; i < 500 && output(gpid).find("waiting") == std::string::npos; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  auto m = cluster.run({"migrate", std::to_string(gpid), "--to", "n2"});
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_NE(m.status, 0) << "a process in a vfork wait was moved?";
  EXPECT_NE(m.err.find("uninterruptible sleep"), std::string::npos) << m.err;
  EXPECT_LT(took, 6s) << "the refusal took too long";
  EXPECT_EQ(info(gpid)["node"], "n1");
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_EQ(output(gpid), "waiting\ndone\n");
}

// Programs of the kinds people run, each moved lazily five times at random moments.
TEST_F(Threads, OpenMpWithEightThreadsOnTwoGiB) {
  std::vector<std::string> argv{program("omp_rounds"), "2048", "14", "300"};
  std::string reference = undisturbed(argv);
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  EXPECT_EQ(move_around(gpid, 5, {""}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

TEST_F(Threads, PythonThreadPoolOfEightHashingOneGiB) {
  std::vector<std::string> argv{"/usr/bin/python3", program("thread_pool_hash.py"), "1024", "14"};
  std::string reference = undisturbed(argv);
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  std::this_thread::sleep_for(1500ms);  // its buffer is filled and the pool's threads are there
  EXPECT_EQ(move_around(gpid, 5, {""}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

TEST_F(Threads, NodeWorkerThreadsPoolOfFourOnOneGiB) {
  std::vector<std::string> argv{"/usr/bin/node", program("node_workers.js"), "1024", "40"};
  std::string reference = undisturbed(argv);
  ASSERT_NE(reference.find("round 39: "), std::string::npos) << reference;
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  std::this_thread::sleep_for(1500ms);  // its buffer is filled and the workers are there
  EXPECT_EQ(move_around(gpid, 5, {""}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

}  // namespace
}  // namespace ferry::testing
