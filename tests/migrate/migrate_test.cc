// Migration end to end, as users run it: a real 3-node local cluster, jobs started with
// `ferry run`, moved with `ferry migrate`, watched with `ferry ps`, `ferry wait`, `ferry kill`.
// Each test asserts what a user cares about: the checksum, the output stream, the signals.
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tests/cluster/cluster_harness.h"
#include "tests/migrate/job_output.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class Migrate : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = cluster.up({"--nodes", "3"});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  // `ferry run -d` on `node`; returns the gpid.
  uint64_t run(const std::vector<std::string>& argv, const std::string& node = "n1") {
    std::vector<std::string> args{"run", "--node", node, "-d", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    auto r = cluster.run(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return std::strtoull(r.out.c_str(), nullptr, 10);
  }
  nlohmann::json info(uint64_t gpid) {
    auto r = cluster.run({"ps", "--json"});
    EXPECT_EQ(r.status, 0) << r.err;
    for (const auto& p : nlohmann::json::parse(r.out.empty() ? "[]" : r.out))
      if (p["gpid"] == gpid) return p;
    return {};
  }
  CommandResult migrate(uint64_t gpid, const std::string& to) { return cluster.run({"migrate", std::to_string(gpid), "--to", to}); }
  int wait(uint64_t gpid) { return cluster.run({"wait", std::to_string(gpid)}).status; }
  std::string output(uint64_t gpid) { return slurp(info(gpid)["output"].get<std::string>()); }
  std::string wait_for_output(uint64_t gpid, const std::string& what) {
    std::string out;
    for (int i = 0; i < 500 && (out = output(gpid)).find(what) == std::string::npos; ++i) std::this_thread::sleep_for(10ms);
    return out;
  }

  TestCluster cluster{"mg" + std::to_string(getpid())};
};

TEST_F(Migrate, TwentyMovesBackAndForthKeepTheChecksum) {
  std::vector<std::string> argv{program("checksum_heap"), "64", "300"};
  std::string reference = undisturbed(argv, "/tmp");
  uint64_t gpid = run(argv);
  ASSERT_GT(gpid, 0u);
  const char* nodes[] = {"n2", "n1", "n3"};
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 80));
    auto r = migrate(gpid, nodes[i % 3]);
    ASSERT_EQ(r.status, 0) << "move " << i << ": " << r.err;
  }
  auto p = info(gpid);
  EXPECT_EQ(p["migrations"], 20);
  EXPECT_EQ(wait(gpid), 0);
  EXPECT_EQ(output(gpid), reference);
}

TEST_F(Migrate, OutputStreamHasNoGapAndNoDuplicate) {
  uint64_t gpid = run({program("counter"), "600", "5"});
  const char* nodes[] = {"n2", "n3", "n1"};
  for (int i = 0; i < 6; ++i) {
    std::this_thread::sleep_for(150ms);
    ASSERT_EQ(migrate(gpid, nodes[i % 3]).status, 0);
  }
  EXPECT_EQ(wait(gpid), 0);
  std::istringstream lines(output(gpid));
  int expect = 0;
  for (std::string line; std::getline(lines, line); ++expect) ASSERT_EQ(line, "line " + std::to_string(expect));
  EXPECT_EQ(expect, 600);
}

// `ferry run` without -d streams the output across the moves and exits with the job's status.
TEST_F(Migrate, RunStreamsOutputAcrossMigrationsAndReturnsTheStatus) {
  CommandResult streamed;
  std::thread runner([&] { streamed = cluster.run({"run", "--", program("counter"), "300", "5"}); });
  uint64_t gpid = 0;
  for (int i = 0; i < 200 && gpid == 0; ++i) {
    auto r = cluster.run({"ps", "--json"});
    for (const auto& p : nlohmann::json::parse(r.out.empty() ? "[]" : r.out))
      if (p["command"].get<std::string>().find("counter 300") != std::string::npos) gpid = p["gpid"];
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_GT(gpid, 0u);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(migrate(gpid, "n2").status, 0);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(migrate(gpid, "n3").status, 0);
  runner.join();
  EXPECT_EQ(streamed.status, 0) << streamed.err;
  std::string expected;
  for (int i = 0; i < 300; ++i) expected += "line " + std::to_string(i) + "\n";
  EXPECT_EQ(streamed.out, expected);
}

TEST_F(Migrate, SignalsSentDuringMigrationsArriveExactlyOnce) {
  uint64_t gpid = run({program("signal_counter")});
  wait_for_output(gpid, "ready");
  std::atomic<bool> moving{true};
  std::thread mover([&] {
    const char* nodes[] = {"n2", "n3", "n1"};
    for (int i = 0; i < 6; ++i) EXPECT_EQ(migrate(gpid, nodes[i % 3]).status, 0);
    moving = false;
  });
  int sent = 0;
  while (moving || sent < 40) {
    auto r = cluster.run({"kill", "-" + std::to_string(SIGRTMIN), std::to_string(gpid)});
    ASSERT_EQ(r.status, 0) << r.err;
    ++sent;
    std::this_thread::sleep_for(5ms);
  }
  mover.join();
  ASSERT_EQ(cluster.run({"kill", "-USR1", std::to_string(gpid)}).status, 0);
  EXPECT_EQ(wait(gpid), 0);
  EXPECT_NE(output(gpid).find("count " + std::to_string(sent)), std::string::npos) << output(gpid) << " sent " << sent;
}

TEST_F(Migrate, RefusalsAndAbortsLeaveTheJobRunningOnTheSource) {
  uint64_t gpid = run({program("counter"), "400", "5"});
  auto to_nowhere = migrate(gpid, "n9");
  EXPECT_NE(to_nowhere.status, 0);
  EXPECT_NE(to_nowhere.err.find("n9"), std::string::npos) << to_nowhere.err;
  auto to_itself = migrate(gpid, "n1");
  EXPECT_NE(to_itself.status, 0);
  EXPECT_NE(to_itself.err.find("already on n1"), std::string::npos) << to_itself.err;
  auto p = info(gpid);
  EXPECT_EQ(p["node"], "n1");
  EXPECT_EQ(p["state"], "running");
  EXPECT_EQ(wait(gpid), 0);
  std::istringstream lines(output(gpid));
  int expect = 0;
  for (std::string line; std::getline(lines, line); ++expect) ASSERT_EQ(line, "line " + std::to_string(expect));
  EXPECT_EQ(expect, 400);

  uint64_t sock = run({program("holds_socket"), "socket"});
  wait_for_output(sock, "ready");
  auto refused = migrate(sock, "n2");
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.err.find("is a TCP socket"), std::string::npos) << refused.err;
  EXPECT_EQ(info(sock)["state"], "running");
  EXPECT_EQ(info(sock)["node"], "n1");
  EXPECT_EQ(cluster.run({"kill", "-KILL", std::to_string(sock)}).status, 0);
  EXPECT_EQ(wait(sock), 128 + SIGKILL);

  auto unknown = cluster.run({"migrate", "999", "--to", "n2"});
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.err.find("no process with gpid 999"), std::string::npos) << unknown.err;
}

TEST_F(Migrate, SeveralJobsAtOnce) {
  std::vector<std::string> argv{program("checksum_heap"), "32", "150"};
  std::string reference = undisturbed(argv, "/tmp");
  std::vector<uint64_t> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(run(argv, i == 2 ? "n2" : "n1"));
  std::vector<std::thread> movers;
  for (size_t i = 0; i < jobs.size(); ++i)
    movers.emplace_back([&, i] {
      const char* nodes[] = {"n3", "n2", "n1", "n3"};
      for (int k = 0; k < 4; ++k) {
        auto r = migrate(jobs[i], nodes[(k + i) % 4]);
        if (r.status != 0) {
          EXPECT_NE(r.err.find("already on"), std::string::npos) << r.err;
        }
      }
    });
  for (auto& t : movers) t.join();
  for (uint64_t g : jobs) {
    EXPECT_EQ(wait(g), 0);
    EXPECT_EQ(output(g), reference);
  }
}

TEST_F(Migrate, OnlyTheOwnerOrRootMayActOnAJob) {
  uint64_t gpid = run({program("counter"), "2000", "5"});
  // The same CLI, as nobody.
  auto as_nobody = [&](const std::vector<std::string>& args) {
    std::string cmd = "setpriv --reuid=65534 --regid=65534 --clear-groups env FERRY_STATE_ROOT=" + cluster.root().string() +
                      " " + std::string(FERRY_BIN_DIR) + "/ferry --cluster " + cluster.name();
    for (const auto& a : args) cmd += " " + a;
    cmd += " 2>&1";
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[1024];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = pclose(p);
    return std::make_pair(WEXITSTATUS(status), out);
  };
  auto k = as_nobody({"kill", "-9", std::to_string(gpid)});
  EXPECT_NE(k.first, 0);
  EXPECT_NE(k.second.find("belongs to uid 0"), std::string::npos) << k.second;
  auto m = as_nobody({"migrate", std::to_string(gpid), "--to", "n2"});
  EXPECT_NE(m.first, 0);
  EXPECT_NE(m.second.find("belongs to uid 0"), std::string::npos) << m.second;
  EXPECT_EQ(info(gpid)["state"], "running");
  EXPECT_EQ(info(gpid)["node"], "n1");
  EXPECT_EQ(cluster.run({"kill", "-KILL", std::to_string(gpid)}).status, 0);
  EXPECT_EQ(wait(gpid), 128 + SIGKILL);
}

// The corpus of the restore tests, moved across nodes.
TEST_F(Migrate, CorpusProgramsAcrossNodes) {
  fs::path dir = cluster.root() / "work";
  fs::create_directories(dir);
  for (std::vector<std::string> argv : {std::vector<std::string>{program("sleeper")}, {program("signals")},
                                        {program("fpu_avx")}, {program("cxx_streams")}, {program("sleeper_static")}}) {
    std::string reference = undisturbed(argv, dir);
    std::vector<std::string> args{"run", "-d", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    auto r = cluster.run(args);
    ASSERT_EQ(r.status, 0) << r.err;
    uint64_t gpid = std::strtoull(r.out.c_str(), nullptr, 10);
    const char* nodes[] = {"n2", "n3", "n1"};
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(150ms);
      auto m = migrate(gpid, nodes[i]);
      if (m.status != 0 && info(gpid)["state"] != "running") break;  // it finished first
      ASSERT_EQ(m.status, 0) << argv[0] << ": " << m.err;
    }
    EXPECT_EQ(wait(gpid), 0) << argv[0];
    EXPECT_EQ(output(gpid), reference) << argv[0];
  }
}

}  // namespace
}  // namespace ferry::testing
