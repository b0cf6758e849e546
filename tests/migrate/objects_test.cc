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
  std::string reference = expect_same_output_after_moves({program("event_loop"), "400"}, 5, {"", "--eager", "", "--precopy=2", ""});
  EXPECT_NE(reference.find("eventfd: 80 of 80 units; signalfd: 20 of 20 signals"), std::string::npos) << reference;
}

// Bytes a job wrote into its own pipe and has not read yet are carried, in order.
TEST_F(Objects, UnreadBytesInAPipeSurviveMoves) {
  expect_same_output_after_moves({program("pipe_buffer"), "200", "20"}, 5, {""});
}

// A periodic timerfd that has expired and is read late shows no time left: it must still go
// on after the move (it came back disarmed once).
TEST_F(Objects, APeriodicTimerfdReadLateKeepsItsPeriod) {
  expect_same_output_after_moves({program("timerfd_late_reader"), "120"}, 5, {"", "--eager"});
}

// setitimer's timers keep running across moves, with the time they had left.
TEST_F(Objects, IntervalTimersKeepFiring) {
  std::string reference = expect_same_output_after_moves({program("alarm_ticks"), "250"}, 5, {"", "--eager"});
  EXPECT_NE(reference.find("still armed"), std::string::npos) << reference;
}

// ... also when the freeze finds the timer's signal waiting undelivered (the timer shows no
// time left then: it came back disarmed once).
TEST_F(Objects, AnIntervalTimerWhoseSignalWaitsUndeliveredKeepsFiring) {
  expect_same_output_after_moves({program("alarm_ticks"), "100", "50"}, 5, {"", "--eager"});
}

}  // namespace
}  // namespace ferry::testing
