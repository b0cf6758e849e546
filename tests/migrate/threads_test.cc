// Multi-threaded jobs across moves: every thread frozen together, captured and rebuilt with its
// tid, its registers, its signals and its place in a futex wait; lazily restored memory served
// to many threads faulting at once; threads being born and dying while the freeze lands.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <sstream>
#include <thread>

#include "tests/migrate/cluster_fixture.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

class Threads : public ClusterTest {
 protected:
  Threads() : ClusterTest("th", 3) {}
};

TEST_F(Threads, EightThreadsMovedFiveTimesPrintWhatAnUnmovedRunPrints) {
  expect_same_output_after_moves({program("thread_rounds"), "8", "250", "10", "64"}, 5, {"", "--eager", "", "--precopy=2", ""});
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

// A signal that pthread_kill left pending on a thread that blocks it (si_code SI_TKILL, which
// only the thread itself may queue again) and a SIGTRAP handler (which injected code must not
// reset): both kept across a lazy and an eager move, caught while the signal waits.
TEST_F(Threads, ASignalPendingOnAThreadAndASigtrapHandlerSurviveMoves) {
  std::string reference = expect_same_output_after_moves({program("pending_in_thread"), "24", "100"}, 2, {"", "--eager"},
                                                         std::chrono::milliseconds(300));
  EXPECT_NE(reference.find("worker: 1 SIGUSR1 (si_code SI_TKILL)"), std::string::npos) << reference;
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
  std::string reference = expect_same_output_after_moves({program("pthread_sync"), "150", "20"}, 5, {"", "--eager"});
  EXPECT_NE(reference.find("EOWNERDEAD"), std::string::npos) << reference;
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

// A main thread that called pthread_exit while its workers run is alive: the process moves
// (in every mode), keeps its pid, and its main thread stays a zombie on the destination.
TEST_F(Threads, AProcessWhoseMainThreadExitedMovesLikeAnyOther) {
  std::string reference = expect_same_output_after_moves({program("leader_exits"), "256", "60", "80"}, 5,
                                                         {"", "--eager", "", "--precopy=2", ""}, 300ms);
  EXPECT_NE(reference.find("round 59: "), std::string::npos) << reference;
  EXPECT_EQ(reference.find("running"), std::string::npos) << reference;
}

// Programs of the kinds people run, each moved lazily five times at random moments.
TEST_F(Threads, OpenMpWithEightThreadsOnTwoGiB) {
  expect_same_output_after_moves({program("omp_rounds"), "2048", "14", "300"}, 5, {""});
}

}  // namespace
}  // namespace ferry::testing
