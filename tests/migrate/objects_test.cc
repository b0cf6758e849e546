// The kernel objects that runtimes hold (pm/kernel_objects.h), across moves: an event loop on
// epoll over a timerfd, an eventfd and a signalfd gets every tick, unit and signal once; bytes
// left unread in a pipe arrive in order.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "tests/cluster/cluster_harness.h"
#include "tests/migrate/job_output.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

class Objects : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = cluster.up({"--nodes", "2"});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  nlohmann::json info(uint64_t gpid) {
    auto r = cluster.run({"ps", "--json"});
    for (const auto& p : nlohmann::json::parse(r.out.empty() ? "[]" : r.out))
      if (p["gpid"] == gpid) return p;
    return {};
  }
  TestCluster cluster{"ob" + std::to_string(getpid())};
};

TEST_F(Objects, AnEventLoopOnEpollTimerfdEventfdAndSignalfdAcrossMoves) {
  std::vector<std::string> argv{program("event_loop"), "400"};
  std::string reference = undisturbed(argv);
  ASSERT_NE(reference.find("eventfd: 80 of 80 units; signalfd: 20 of 20 signals"), std::string::npos) << reference;
  auto r = cluster.run({"run", "--node", "n1", "-d", "--", argv[0], argv[1]});
  ASSERT_EQ(r.status, 0) << r.err;
  uint64_t gpid = std::strtoull(r.out.c_str(), nullptr, 10);
  std::mt19937 rng(std::random_device{}());
  const char* modes[] = {"", "--eager", "", "--precopy=2", ""};
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    std::vector<std::string> args{"migrate", std::to_string(gpid), "--to", i % 2 == 0 ? "n2" : "n1"};
    if (*modes[i]) args.push_back(modes[i]);
    auto m = cluster.run(args);
    ASSERT_EQ(m.status, 0) << "move " << i << ": " << m.err;
  }
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_EQ(slurp(info(gpid)["output"].get<std::string>()), reference);
}

// Bytes a job wrote into its own pipe and has not read yet are carried, in order.
TEST_F(Objects, UnreadBytesInAPipeSurviveMoves) {
  std::vector<std::string> argv{program("pipe_buffer"), "200", "20"};
  std::string reference = undisturbed(argv);
  auto r = cluster.run({"run", "--node", "n1", "-d", "--", argv[0], argv[1], argv[2]});
  ASSERT_EQ(r.status, 0) << r.err;
  uint64_t gpid = std::strtoull(r.out.c_str(), nullptr, 10);
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    auto m = cluster.run({"migrate", std::to_string(gpid), "--to", i % 2 == 0 ? "n2" : "n1"});
    ASSERT_EQ(m.status, 0) << "move " << i << ": " << m.err;
  }
  auto w = cluster.run({"wait", std::to_string(gpid)});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_EQ(slurp(info(gpid)["output"].get<std::string>()), reference);
}

}  // namespace
}  // namespace ferry::testing
