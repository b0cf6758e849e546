// The kernel objects that runtimes hold (pm/kernel_objects.h), across moves: an event loop on
// epoll over a timerfd, an eventfd and a signalfd gets every tick, unit and signal once; bytes
// left unread in a pipe arrive in order.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "tests/migrate/cluster_fixture.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

class Objects : public ClusterTest {
 protected:
  Objects() : ClusterTest("ob", 2) {}
};

TEST_F(Objects, AnEventLoopOnEpollTimerfdEventfdAndSignalfdAcrossMoves) {
  std::vector<std::string> argv{program("event_loop"), "400"};
  std::string reference = undisturbed(argv);
  ASSERT_NE(reference.find("eventfd: 80 of 80 units; signalfd: 20 of 20 signals"), std::string::npos) << reference;
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  EXPECT_EQ(move_around(gpid, 5, {"", "--eager", "", "--precopy=2", ""}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

// Bytes a job wrote into its own pipe and has not read yet are carried, in order.
TEST_F(Objects, UnreadBytesInAPipeSurviveMoves) {
  std::vector<std::string> argv{program("pipe_buffer"), "200", "20"};
  std::string reference = undisturbed(argv);
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  EXPECT_EQ(move_around(gpid, 5, {""}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

// A periodic timerfd that has expired and is read late shows no time left: it must still go
// on after the move (it came back disarmed once).
TEST_F(Objects, APeriodicTimerfdReadLateKeepsItsPeriod) {
  std::vector<std::string> argv{program("timerfd_late_reader"), "120"};
  std::string reference = undisturbed(argv);
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  EXPECT_EQ(move_around(gpid, 5, {"", "--eager"}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

// setitimer's timers keep running across moves, with the time they had left.
TEST_F(Objects, IntervalTimersKeepFiring) {
  std::vector<std::string> argv{program("alarm_ticks"), "250"};
  std::string reference = undisturbed(argv);
  ASSERT_NE(reference.find("still armed"), std::string::npos) << reference;
  uint64_t gpid = start(argv);
  ASSERT_NE(gpid, 0u);
  EXPECT_EQ(move_around(gpid, 5, {"", "--eager"}), 5) << "it ended before five moves";
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  expect_same_lines(output(gpid), reference);
}

}  // namespace
}  // namespace ferry::testing
