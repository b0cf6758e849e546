// The migration modes end to end (docs/MIGRATION.md, "Modes"): `ferry migrate --eager` moves all
// of a job's memory before it resumes, so the source can die right after; `--precopy` copies it
// while the job runs, so that only what the job wrote since follows; both keep the job's output
// exactly what it would have been. Real 3-node local cluster, real pagers and userfaultfd.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "tests/cluster/cluster_harness.h"
#include "tests/migrate/job_output.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class Modes : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = cluster.up({"--nodes", "3", "--heartbeat-ms", "250"});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  uint64_t run(const std::vector<std::string>& argv) {
    std::vector<std::string> args{"run", "--node", "n1", "-d", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    auto r = cluster.run(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return std::strtoull(r.out.c_str(), nullptr, 10);
  }
  nlohmann::json info(uint64_t gpid) {
    auto r = cluster.run({"ps", "--json"});
    for (const auto& p : nlohmann::json::parse(r.out.empty() ? "[]" : r.out, nullptr, false))
      if (p.is_object() && p["gpid"] == gpid) return p;
    return {};
  }
  std::string output(uint64_t gpid) { return slurp(info(gpid)["output"].get<std::string>()); }
  void wait_for_output(uint64_t gpid, const std::string& what) {
    for (int i = 0; i < 1000 && output(gpid).find(what) == std::string::npos; ++i) std::this_thread::sleep_for(10ms);
  }
  // `ferry migrate --json` with `mode_flags`; the reply, or an "error" member.
  nlohmann::json migrate(uint64_t gpid, const std::string& to, const std::vector<std::string>& mode_flags) {
    std::vector<std::string> args{"migrate", std::to_string(gpid), "--to", to, "--json"};
    args.insert(args.end(), mode_flags.begin(), mode_flags.end());
    auto r = cluster.run(args);
    if (r.status != 0) return {{"error", r.err}};
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  // The import of `gpid`'s memory on `node` (ferry stat --json), or null.
  nlohmann::json import_on(uint64_t gpid, const std::string& node) {
    auto r = cluster.run({"stat", std::to_string(gpid), "--json"});
    for (const auto& n : nlohmann::json::parse(r.out.empty() ? "[]" : r.out, nullptr, false))
      if (n.is_object() && n["node"] == node && !n["imports"].empty()) return n["imports"].back();
    return nullptr;
  }

  TestCluster cluster{"md" + std::to_string(getpid())};
};

TEST_F(Modes, EagerMovesEveryPageBeforeTheResumeSoTheSourceMayDieAtOnce) {
  std::vector<std::string> argv{program("checksum_heap"), "128", "30"};
  const std::string reference = undisturbed(argv);
  uint64_t gpid = run(argv);
  wait_for_output(gpid, "round 2 ");
  auto m = migrate(gpid, "n2", {"--eager"});
  ASSERT_FALSE(m.contains("error")) << m.dump();
  EXPECT_EQ(m["mode"], "eager");
  EXPECT_GE(m["pages_before_resume"].get<uint64_t>(), 128u * 256) << "a 128 MiB heap arrived before the resume";
  // Nothing is left to fetch: the source's node may go at once.
  auto k = cluster.run({"cluster", "kill", "n1"});
  ASSERT_EQ(k.status, 0) << k.err;
  ASSERT_EQ(cluster.run({"--node", "n2", "wait", std::to_string(gpid)}).status, 0);
  EXPECT_EQ(output(gpid), reference);
  auto in = import_on(gpid, "n2");
  ASSERT_FALSE(in.is_null());
  EXPECT_EQ(in["state"], "complete");
  EXPECT_EQ(in["faults"].get<uint64_t>(), 0u) << "an eager job never faults on remote memory";
}

TEST_F(Modes, PrecopyLeavesOnlyTheHotSetToFollowAndKeepsTheOutput) {
  std::vector<std::string> argv{program("hot_set"), "256", "40"};
  const std::string reference = undisturbed(argv);
  uint64_t gpid = run(argv);
  wait_for_output(gpid, "round 2 ");
  auto m = migrate(gpid, "n2", {"--precopy=3"});
  ASSERT_FALSE(m.contains("error")) << m.dump();
  EXPECT_EQ(m["mode"], "precopy");
  EXPECT_GE(m["precopy_rounds"].get<uint32_t>(), 1u);
  const uint64_t present = m["present_pages"], staged = m["precopy_staged_pages"];
  EXPECT_GE(m["precopy_pages_sent"].get<uint64_t>(), present * 9 / 10) << "the first round copies everything";
  // The job rewrites a tenth of its memory: the cold 90% must have been there, unchanged, at the freeze.
  EXPECT_GE(staged, present * 8 / 10) << m.dump();
  EXPECT_LT(staged, present) << "its hot set was written since its copy";
  ASSERT_EQ(cluster.run({"wait", std::to_string(gpid)}).status, 0);
  EXPECT_EQ(output(gpid), reference);
  auto in = import_on(gpid, "n2");
  ASSERT_FALSE(in.is_null());
  EXPECT_EQ(in["state"], "complete");
  EXPECT_GE(in["staged_pages"].get<uint64_t>(), staged * 9 / 10) << "staged pages are installed from the stage";
  EXPECT_LE(in["bytes_on_wire"].get<uint64_t>(), (present - staged + 1024) * 4096) << "only the rest crosses after the freeze";
}

// At 4 GiB and more the source's walk of the page tables (which takes the precopy's last look)
// outlasts the migration's commit; a delay at the walk makes it so here. The stage must still
// be used once the walk is through (it was not: the commit forgot the precopy first).
TEST_F(Modes, APrecopyCommittedBeforeTheSourcesWalkStillInstallsFromTheStage) {
  // Idle 8 s between its two rounds: the move (precopy, freeze, commit, the walk 600 ms late)
  // falls in that pause, and round 1 then reads every page.
  const std::string reference = undisturbed({program("hot_set"), "256", "2"});
  uint64_t gpid = run({program("hot_set"), "256", "2", "8000"});
  wait_for_output(gpid, "round 0 ");
  auto f = cluster.run({"fault", "set", "n1", "presence-walk", "delay", "--ms", "600"});
  ASSERT_EQ(f.status, 0) << f.err;
  auto m = migrate(gpid, "n2", {"--precopy=2"});
  ASSERT_FALSE(m.contains("error")) << m.dump();
  const uint64_t present = m["present_pages"], staged = m["precopy_staged_pages"];
  EXPECT_GE(staged, present * 9 / 10) << "the job sat still: nearly all of it was staged " << m.dump();
  ASSERT_EQ(cluster.run({"wait", std::to_string(gpid)}).status, 0);
  EXPECT_EQ(output(gpid), reference);
  auto in = import_on(gpid, "n2");
  ASSERT_FALSE(in.is_null());
  EXPECT_EQ(in["state"], "complete");
  EXPECT_GE(in["staged_pages"].get<uint64_t>(), staged * 9 / 10) << "staged pages are installed from the stage " << in.dump();
  EXPECT_LE(in["bytes_on_wire"].get<uint64_t>(), (present - staged + 1024) * 4096) << "only the rest crosses after the freeze";
}

TEST_F(Modes, PrecopyAndEagerAndLazyTakeTurnsOnOneJob) {
  std::vector<std::string> argv{program("hot_set"), "64", "60"};
  const std::string reference = undisturbed(argv);
  uint64_t gpid = run(argv);
  wait_for_output(gpid, "round 1 ");
  const std::vector<std::pair<std::string, std::vector<std::string>>> moves{
      {"n2", {"--precopy"}}, {"n3", {"--eager"}}, {"n1", {}}, {"n2", {"--precopy=1"}}, {"n1", {"--eager"}}};
  for (const auto& [to, flags] : moves) {
    auto m = migrate(gpid, to, flags);
    ASSERT_FALSE(m.contains("error")) << to << ": " << m.dump();
    EXPECT_EQ(info(gpid)["node"], to);
  }
  ASSERT_EQ(cluster.run({"wait", std::to_string(gpid)}).status, 0);
  EXPECT_EQ(output(gpid), reference);
}

TEST_F(Modes, APrecopyWhoseDestinationDiesLeavesTheJobRunningOnTheSource) {
  // Long enough to outlive the precopy's discovery that its destination is gone (one StagePages
  // request timing out: 2-4 s); with 80 rounds the job sometimes ended first.
  std::vector<std::string> argv{program("checksum_heap"), "512", "200"};
  const std::string reference = undisturbed(argv);
  uint64_t gpid = run(argv);
  wait_for_output(gpid, "round 1 ");
  // checksum_heap rewrites all of its memory every round: the precopy goes on for a while.
  auto moving = std::async(std::launch::async, [&] { return migrate(gpid, "n2", {"--precopy=30"}); });
  std::this_thread::sleep_for(400ms);
  ASSERT_EQ(cluster.run({"cluster", "kill", "n2"}).status, 0);
  auto m = moving.get();
  ASSERT_TRUE(m.contains("error")) << "a migration to a node that died must fail: " << m.dump();
  EXPECT_NE(m["error"].get<std::string>().find("continues on n1"), std::string::npos) << m["error"];
  EXPECT_EQ(info(gpid)["node"], "n1");
  ASSERT_EQ(cluster.run({"wait", std::to_string(gpid)}).status, 0);
  EXPECT_EQ(output(gpid), reference) << "the job ran on, untouched";
}

TEST_F(Modes, BadModeArgumentsAreRefusedBeforeAnythingMoves) {
  uint64_t gpid = run({program("sleeper"), "30"});
  auto both = cluster.run({"migrate", std::to_string(gpid), "--to", "n2", "--eager", "--precopy"});
  EXPECT_NE(both.status, 0);
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;
  auto zero = cluster.run({"migrate", std::to_string(gpid), "--to", "n2", "--precopy=0"});
  EXPECT_NE(zero.status, 0);
  EXPECT_NE(zero.err.find("1 to 64"), std::string::npos) << zero.err;
  auto word = cluster.run({"migrate", std::to_string(gpid), "--to", "n2", "--precopy=many"});
  EXPECT_NE(word.status, 0);
  EXPECT_EQ(info(gpid)["node"], "n1");
  EXPECT_EQ(info(gpid)["migrations"], 0);
}

}  // namespace
}  // namespace ferry::testing
