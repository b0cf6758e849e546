// The kernel objects that runtimes hold (pm/kernel_objects.h), across moves: an event loop on
// epoll over a timerfd, an eventfd and a signalfd gets every tick, unit and signal once; bytes
// left unread in a pipe, a FIFO or a unix socket pair arrive in order (with their datagram
// boundaries); inotify watches keep their numbers and see new files; POSIX timers keep their
// ids, notifications and periods. And what stays refused: a socket or a FIFO whose other end
// is another process's.
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

// Seven moves, five of them lazy, one eager and one after a precopy.
const std::vector<std::string> kFiveLazyOfSeven{"", "", "--eager", "", "", "--precopy=2", ""};

// Unix socket pairs of each type, with messages unread in both directions, a shut-down pair,
// flags, SO_PASSCRED, a receive timeout and a send buffer size (pm/unix_sockets.h).
TEST_F(Objects, UnixSocketPairsKeepWhatIsUnreadAcrossMoves) {
  std::string reference = expect_same_output_after_moves({program("socket_pairs"), "250", "20"}, 7, kFiveLazyOfSeven);
  EXPECT_NE(reference.find("receive timeout 2.500000 s; dgram cloexec 1, send buffer 131072; seqpacket passcred 1, shut "
                           "down pair holds 'words', send there: Broken pipe"),
            std::string::npos)
      << reference;
}

// A FIFO opened by its path at both ends, with bytes in it all along (pm/fifos.h).
TEST_F(Objects, AFifoKeepsItsBytesAcrossMoves) {
  std::string path = "/tmp/ferry-objects-fifo-" + std::to_string(getpid());
  std::string reference = expect_same_output_after_moves({program("fifo_buffer"), path, "250", "20"}, 7, kFiveLazyOfSeven);
  EXPECT_NE(reference.find("fifo mode 640, reader flags 0, writer cloexec 1"), std::string::npos) << reference;
}

// inotify watches come back with their numbers (a gap among them) and see the files the program
// creates after each move (pm/inotify.h).
TEST_F(Objects, InotifyWatchesKeepTheirNumbersAndSeeNewFiles) {
  std::string dir = "/tmp/ferry-objects-inotify-" + std::to_string(getpid());
  std::string reference = expect_same_output_after_moves({program("inotify_watch"), dir, "250", "20"}, 7, kFiveLazyOfSeven);
  EXPECT_NE(reference.find("watches 1 and 3 (2 given back)"), std::string::npos) << reference;
}

// POSIX timers of every notification keep their ids, values, threads and periods; overruns go
// on being counted (pm/posix_timers.h).
TEST_F(Objects, PosixTimersKeepTheirIdsAndTicks) {
  std::string reference = expect_same_output_after_moves({program("posix_timers"), "160"}, 7, kFiveLazyOfSeven);
  EXPECT_NE(reference.find("A: ticks ok, overruns counted: yes; B: ticks ok, all to its thread with its value: yes; D: ticks ok"),
            std::string::npos)
      << reference;
}

// What stays refused, with the job left running where it was: one end of a socket pair whose
// other end is another process's, and a FIFO opened at one end only.
TEST_F(Objects, ASocketOrFifoToAnotherProcessIsRefused) {
  std::string fifo = "/tmp/ferry-objects-lone-fifo-" + std::to_string(getpid());
  struct Case {
    std::vector<std::string> argv;
    std::string message;
  } cases[] = {
      {{program("holds_socket"), "unix"}, "fd 3 is a unix socket whose peer is not held by this process: sockets cannot move"},
      {{program("holds_socket"), "fifo", fifo}, "is a FIFO (" + fifo + ") this process holds open for reading only"},
  };
  for (const auto& c : cases) {
    uint64_t gpid = start(c.argv);
    ASSERT_NE(gpid, 0u);
    for (int i = 0; i < 100 && output(gpid).find("ready") == std::string::npos; ++i) std::this_thread::sleep_for(50ms);
    auto refused = cluster.run({"migrate", std::to_string(gpid), "--to", "n2"});
    EXPECT_NE(refused.status, 0);
    EXPECT_NE(refused.err.find(c.message), std::string::npos) << refused.err;
    EXPECT_EQ(info(gpid)["state"], "running");
    EXPECT_EQ(info(gpid)["node"], "n1");
    EXPECT_EQ(cluster.run({"kill", "-KILL", std::to_string(gpid)}).status, 0);
  }
  ::unlink(fifo.c_str());
}

}  // namespace
}  // namespace ferry::testing
