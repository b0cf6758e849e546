// ferry-fault-suite: breaks migrations on purpose, at random moments, on a real local cluster,
// and checks what a user must see: the job ends up on exactly one node with the right output,
// or (only when a node or daemon holding it died) it is reported lost with a reason; nothing
// of it is left running. Prints a table of scenarios x trials x outcomes; exits 1 if any trial
// ended otherwise.
//
//   ferry-fault-suite [--trials N] [--soak N] [--scenario NAME]... [--seed S] [--list] [--keep]
//
// --trials: trials per scenario (default 10). --soak N: N trials in all, scenarios in turn.
// --keep: leave the clusters (daemons, logs) in place at the end for a post-mortem.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "tests/cluster/cluster_harness.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string program(const std::string& name) { return std::string(FERRY_PROGRAMS_DIR) + "/" + name; }

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string shell_output(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

// What a trial came to.
struct Outcome {
  enum Kind { kSurvived, kLost, kFailed } kind = kFailed;
  std::string detail;  // for failures (and the reason of a loss)
};

// A job on the cluster: a checksum loop whose output is known in advance.
struct Job {
  uint64_t gpid = 0;
  int mib = 0, rounds = 0;
  std::string reference;
};

class Suite {
 public:
  Suite(uint32_t seed) : rng_(seed) {}

  TestCluster& cluster(bool netns) {
    auto& c = netns ? netns_cluster_ : cluster_;
    if (!c) {
      // A new name each time: a cluster kept for a post-mortem keeps its namespaces.
      c = std::make_unique<TestCluster>((netns ? "fsn" : "fs") + std::to_string(getpid() % 100000) + "-" +
                                        std::to_string(builds_++ % 100));
      std::vector<std::string> args{"--nodes", "3", "--heartbeat-ms", "250"};
      if (netns) args.push_back("--netns");
      auto r = c->up(args);
      if (r.status != 0) throw std::runtime_error("cluster up failed: " + r.err);
    }
    return *c;
  }

  int random(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  const std::string& reference(int mib, int rounds) {
    auto key = std::to_string(mib) + "x" + std::to_string(rounds);
    auto it = references_.find(key);
    if (it == references_.end())
      it = references_.emplace(key, shell_output(program("checksum_heap") + " " + std::to_string(mib) + " " +
                                                 std::to_string(rounds))).first;
    return it->second;
  }

  Job start(TestCluster& c, const std::string& node, int mib, int rounds) {
    Job j{0, mib, rounds, reference(mib, rounds)};
    auto r = c.run({"run", "--node", node, "-d", "--", program("checksum_heap"), std::to_string(mib), std::to_string(rounds)});
    if (r.status != 0) throw std::runtime_error("run failed: " + r.err);
    j.gpid = std::strtoull(r.out.c_str(), nullptr, 10);
    // Wait for its first round, so that it has its memory.
    for (int i = 0; i < 500 && slurp(info(c, j.gpid).value("output", "")).find("round 0 ") == std::string::npos; ++i)
      std::this_thread::sleep_for(10ms);
    return j;
  }

  static nlohmann::json info(TestCluster& c, uint64_t gpid) {
    auto r = c.run({"ps", "--json"});
    auto all = nlohmann::json::parse(r.out.empty() ? "[]" : r.out, nullptr, false);
    if (all.is_array())
      for (const auto& p : all)
        if (p.value("gpid", 0ull) == gpid) return p;
    return nlohmann::json::object();
  }

  // Waits for the job's end (bounded), then judges it. `may_be_lost`: a node or daemon that
  // held it died in this trial.
  Outcome judge(TestCluster& c, const Job& j, bool may_be_lost, std::chrono::seconds bound = 60s) {
    auto deadline = Clock::now() + bound;
    nlohmann::json p;
    for (;;) {
      p = info(c, j.gpid);
      std::string st = p.value("state", "");
      if (st == "exited" || st == "lost") break;
      if (Clock::now() > deadline)
        return {Outcome::kFailed, "gpid " + std::to_string(j.gpid) + " still '" + st + "' after " +
                                      std::to_string(bound.count()) + " s"};
      std::this_thread::sleep_for(100ms);
    }
    std::string out = slurp(p.value("output", ""));
    // Nothing of it left: no process runs its command line (job, copy or memory shell).
    std::string marker = program("checksum_heap") + " " + std::to_string(j.mib) + " " + std::to_string(j.rounds);
    for (int i = 0;; ++i) {
      std::string left = shell_output("pgrep -f -x '" + marker + "'");
      if (left.empty()) break;
      if (i > 150) return {Outcome::kFailed, "processes of gpid " + std::to_string(j.gpid) + " left: " + left};
      std::this_thread::sleep_for(100ms);
    }
    if (p["state"] == "lost") {
      std::string reason = p.value("reason", "");
      if (!may_be_lost) return {Outcome::kFailed, "lost although every node lived: " + reason};
      if (reason.empty()) return {Outcome::kFailed, "lost without a reason"};
      // What it printed before is a prefix of the reference: no gap, no duplicate.
      if (j.reference.compare(0, out.size(), out) != 0) return {Outcome::kFailed, "lost, and its output diverged"};
      return {Outcome::kLost, reason};
    }
    if (out != j.reference) {
      std::string why = out.size() > j.reference.size() ? "longer (a duplicate?)" : "different (a gap?)";
      return {Outcome::kFailed, "output " + why + ": " + std::to_string(out.size()) + " bytes vs " +
                                    std::to_string(j.reference.size())};
    }
    int status = p.value("exit_status", 0);
    if (status != 0 && status != -1) return {Outcome::kFailed, "exit status " + std::to_string(status)};
    return {Outcome::kSurvived, ""};
  }

  // What is wrong with a cluster, "" when nothing: every node alive with its agent, pager and
  // bulk ports registered, and no job still running or moving. Waits up to `patience` for a
  // node that is coming back (a restart just done).
  static std::string problems(TestCluster& c, std::chrono::seconds patience) {
    auto deadline = Clock::now() + patience;
    for (;;) {
      std::string bad;
      auto nodes = c.nodes_json();
      for (std::string n : {"n1", "n2", "n3"}) {
        const nlohmann::json* node = nullptr;
        for (const auto& x : nodes)
          if (x.is_object() && x.value("name", "") == n) node = &x;
        if (!node) {
          bad += n + " is not listed; ";
          continue;
        }
        if (node->value("state", "") != "alive") bad += n + " is " + node->value("state", "?") + "; ";
        std::string ports;
        if (node->contains("ports"))
          for (const auto& p : (*node)["ports"]) ports += p.value("name", "") + " ";
        for (std::string want : {"agent@", "pager@", "pager-bulk@"})
          if (ports.find(want + n + " ") == std::string::npos) bad += want + n + " is not registered; ";
      }
      auto ps = c.run({"ps", "--json"});
      auto jobs = nlohmann::json::parse(ps.out.empty() ? "[]" : ps.out, nullptr, false);
      if (ps.status != 0 || !jobs.is_array()) bad += "ps failed: " + ps.err + "; ";
      else
        for (const auto& j : jobs) {
          std::string st = j.value("state", "");
          if (st != "exited" && st != "lost") bad += "gpid " + std::to_string(j.value("gpid", 0ull)) + " is still " + st + "; ";
        }
      if (bad.empty() || Clock::now() > deadline) return bad;
      std::this_thread::sleep_for(200ms);
    }
  }

  // After a trial: "" when every cluster is whole again; else what is wrong, and the broken
  // cluster is taken down, to be built afresh by the next trial that needs it.
  std::string check_and_rebuild() {
    std::string broken;
    for (auto* c : {&cluster_, &netns_cluster_}) {
      if (!*c) continue;
      std::string bad = problems(**c, 15s);
      if (bad.empty()) continue;
      broken += (*c)->name() + ": " + bad;
      if (keep_broken) {  // for a post-mortem: left as it is, and a new one is built
        (*c)->keep();
        broken += "kept at FERRY_STATE_ROOT=" + (*c)->root().string() + "; ";
      }
      c->reset();
    }
    return broken;
  }

  bool keep_broken = false;
  int builds_ = 0;
  std::mt19937 rng_;
  std::unique_ptr<TestCluster> cluster_, netns_cluster_;
  std::map<std::string, std::string> references_;
};

std::string info_node(TestCluster& c, uint64_t gpid) { return Suite::info(c, gpid).value("node", ""); }

// Heals whatever a trial broke, so the next one starts on a whole cluster. A node that does not
// come back fails the trial that broke it ("" when all is well), not every trial after it.
std::string restart_if_needed(TestCluster& c, const std::vector<std::string>& nodes) {
  std::string failed;
  for (const auto& n : nodes)
    if (auto r = c.run({"cluster", "restart", n}); r.status != 0) failed += "node " + n + " did not restart: " + r.err;
  for (const auto& n : {"n1", "n2", "n3"}) c.run({"fault", "clear", n});
  return failed;
}

// `o`, or a failure if healing the cluster after the trial failed.
Outcome healed(Outcome o, const std::string& restart_error) {
  if (restart_error.empty() || o.kind == Outcome::kFailed) return o;
  return {Outcome::kFailed, restart_error};
}

using Scenario = std::function<Outcome(Suite&)>;

// A message fault of `action` at a random point of a migration n1 -> n2.
Outcome message_fault(Suite& s, const std::string& action) {
  auto& c = s.cluster(false);
  static const std::vector<std::pair<std::string, std::string>> kPoints = {
      {"offer", "n2"}, {"install", "n2"}, {"commit", "n2"}, {"forward", "n2"}, {"page-reply", "n1"}, {"prefetch", "n1"}};
  auto [point, node] = kPoints[size_t(s.random(0, int(kPoints.size()) - 1))];
  Job j = s.start(c, "n1", 64, 120);
  std::vector<std::string> set{"fault", "set", node, point, action, "--count", std::to_string(s.random(1, 3))};
  if (action == "delay") set.insert(set.end(), {"--ms", std::to_string(s.random(50, 3000))});
  auto f = c.run(set);
  if (f.status != 0) return {Outcome::kFailed, "fault set: " + f.err};
  std::this_thread::sleep_for(std::chrono::milliseconds(s.random(0, 300)));
  std::thread signaller([&] {  // a queued signal for "forward" (SIGCONT: harmless to the job)
    std::this_thread::sleep_for(std::chrono::milliseconds(s.random(0, 20)));
    c.run({"kill", "-CONT", std::to_string(j.gpid)});
  });
  auto m = c.run({"migrate", std::to_string(j.gpid), "--to", "n2"});
  signaller.join();
  Outcome o = s.judge(c, j, false);
  if (o.kind == Outcome::kFailed) o.detail = point + " " + action + ": " + o.detail + " (migrate said: " + m.err + m.out + ")";
  return healed(o, restart_if_needed(c, {}));
}

// A daemon crashes at a random point; it is restarted afterwards (as an operator would).
Outcome crash_at_point(Suite& s) {
  auto& c = s.cluster(false);
  static const std::vector<std::pair<std::string, std::string>> kPoints = {
      {"freeze", "n1"}, {"offer", "n2"}, {"install", "n2"}, {"commit", "n2"}, {"resume", "n2"}, {"page-reply", "n1"}, {"prefetch", "n1"}};
  auto [point, node] = kPoints[size_t(s.random(0, int(kPoints.size()) - 1))];
  Job j = s.start(c, "n1", 64, 120);
  auto f = c.run({"fault", "set", node, point, "crash"});
  if (f.status != 0) return {Outcome::kFailed, "fault set: " + f.err};
  std::this_thread::sleep_for(std::chrono::milliseconds(s.random(0, 300)));
  auto m = c.run({"migrate", std::to_string(j.gpid), "--to", "n2"});
  std::this_thread::sleep_for(300ms);
  std::string restart_error = restart_if_needed(c, {node});
  Outcome o = s.judge(c, j, true);
  if (o.kind != Outcome::kSurvived) o.detail = "crash at " + point + ": " + o.detail;
  return healed(o, restart_error.empty() ? "" : "crash at " + point + ": " + restart_error);
}

// The destination is killed at a random moment: continued on the source, or lost with it.
Outcome destination_killed(Suite& s) {
  auto& c = s.cluster(false);
  Job j = s.start(c, "n1", 64, 120);
  int delay = s.random(-1, 40);
  if (delay < 0) c.run({"cluster", "kill", "n2"});
  std::thread mover([&] { c.run({"migrate", std::to_string(j.gpid), "--to", "n2"}); });
  if (delay >= 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    c.run({"cluster", "kill", "n2"});
  }
  mover.join();
  Outcome o = s.judge(c, j, true);
  if (o.kind == Outcome::kLost && o.detail.find("node n2 died") == std::string::npos)
    o = {Outcome::kFailed, "lost for another reason: " + o.detail};
  return healed(o, restart_if_needed(c, {"n2"}));
}

// The destination's link is cut before the offer: the job goes on at the source, no gap.
Outcome destination_cut(Suite& s) {
  auto& c = s.cluster(true);
  Job j = s.start(c, "n1", 64, 120);
  c.run({"cluster", "cut", "n2"});
  std::this_thread::sleep_for(std::chrono::milliseconds(s.random(0, 200)));
  auto m = c.run({"migrate", std::to_string(j.gpid), "--to", "n2"});
  c.run({"cluster", "heal", "n2"});
  Outcome o = s.judge(c, j, false);
  if (o.kind == Outcome::kSurvived && info_node(c, j.gpid) != "n1") o = {Outcome::kFailed, "it moved over a cut link"};
  if (m.status == 0) o = {Outcome::kFailed, "a migration over a cut link reported success"};
  c.wait_for_state("n2", "alive", 10000);
  return o;
}

// The source dies after the commit while pages are still remote: lost, in bounded time, with
// the reason and the pages that never arrived.
Outcome source_killed_after_commit(Suite& s) {
  auto& c = s.cluster(false);
  Job j = s.start(c, "n1", 1024, 200);
  auto m = c.run({"migrate", std::to_string(j.gpid), "--to", "n2"});
  if (m.status != 0) return {Outcome::kFailed, "migrate: " + m.err};
  std::this_thread::sleep_for(std::chrono::milliseconds(s.random(0, 50)));
  c.run({"cluster", "kill", "n1"});
  Outcome o = s.judge(c, j, true, 30s);
  std::string restart_error = restart_if_needed(c, {"n1"});
  if (o.kind == Outcome::kLost && o.detail.find("never arrived") == std::string::npos)
    return {Outcome::kFailed, "lost without the count of missing pages: " + o.detail};
  return healed(o, restart_error);
}

// The master is killed and restarted: jobs run on, migrations are refused meanwhile, exits
// during the outage are not lost, the table is whole again.
Outcome master_restart(Suite& s) {
  auto& c = s.cluster(false);
  Job long_job = s.start(c, "n1", 64, 120);
  Job short_job = s.start(c, "n2", 16, 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(s.random(0, 300)));
  c.run({"cluster", "kill", "master"});
  auto m = c.run({"migrate", std::to_string(long_job.gpid), "--to", "n3"});
  if (m.status == 0 || m.err.find("master is unreachable") == std::string::npos)
    return {Outcome::kFailed, "a migration during the outage: " + m.err};
  std::this_thread::sleep_for(std::chrono::milliseconds(s.random(500, 1500)));
  if (c.run({"cluster", "restart", "master"}).status != 0) return {Outcome::kFailed, "the master did not restart"};
  Outcome a = s.judge(c, short_job, false), b = s.judge(c, long_job, false);
  return a.kind != Outcome::kSurvived ? a : b;
}

// An agent crashes and is restarted: its jobs are found again (or reported lost).
Outcome agent_restart(Suite& s) {
  auto& c = s.cluster(false);
  Job j = s.start(c, "n3", 64, 120);
  std::this_thread::sleep_for(std::chrono::milliseconds(s.random(0, 500)));
  if (c.run({"cluster", "restart", "n3"}).status != 0) return {Outcome::kFailed, "n3 did not restart"};
  // Found again: it can still be moved, and ends right.
  auto m = c.run({"migrate", std::to_string(j.gpid), "--to", "n1"});
  if (m.status != 0) return {Outcome::kFailed, "a job found again could not migrate: " + m.err};
  return s.judge(c, j, false);
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  using namespace ferry::testing;
  int trials = 10, soak = 0;
  uint32_t seed = std::random_device{}();
  std::vector<std::string> only;
  bool list = false, keep = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "ferry-fault-suite: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--trials") trials = std::stoi(next());
    else if (a == "--soak") soak = std::stoi(next());
    else if (a == "--seed") seed = uint32_t(std::stoul(next()));
    else if (a == "--scenario") only.push_back(next());
    else if (a == "--list") list = true;
    else if (a == "--keep") keep = true;
    else {
      std::cerr << "usage: ferry-fault-suite [--trials N] [--soak N] [--scenario NAME]... [--seed S] [--list] [--keep]\n";
      return 2;
    }
  }
  std::vector<std::pair<std::string, Scenario>> scenarios = {
      {"message-drop", [](Suite& s) { return message_fault(s, "drop"); }},
      {"message-delay", [](Suite& s) { return message_fault(s, "delay"); }},
      {"message-duplicate", [](Suite& s) { return message_fault(s, "duplicate"); }},
      {"daemon-crash-at-point", crash_at_point},
      {"destination-killed", destination_killed},
      {"destination-cut", destination_cut},
      {"source-killed-after-commit", source_killed_after_commit},
      {"master-restart", master_restart},
      {"agent-restart", agent_restart},
  };
  if (list) {
    for (const auto& [name, f] : scenarios) std::cout << name << "\n";
    return 0;
  }
  if (!only.empty())
    std::erase_if(scenarios, [&](const auto& s) { return std::find(only.begin(), only.end(), s.first) == only.end(); });
  std::vector<size_t> order;
  if (soak > 0)
    for (int i = 0; i < soak; ++i) order.push_back(size_t(i) % scenarios.size());
  else
    for (int t = 0; t < trials; ++t)
      for (size_t k = 0; k < scenarios.size(); ++k) order.push_back(k);
  std::cout << "ferry-fault-suite: " << order.size() << " trials over " << scenarios.size() << " scenarios, seed " << seed
            << std::endl;
  ::signal(SIGPIPE, SIG_IGN);
  Suite suite(seed);
  suite.keep_broken = keep;
  struct Tally {
    int trials = 0, survived = 0, lost = 0, failed = 0;
  };
  std::map<std::string, Tally> tally;
  std::vector<std::string> failures;
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < order.size(); ++i) {
    const auto& [name, run] = scenarios[order[i]];
    Outcome o;
    try {
      o = run(suite);
    } catch (const std::exception& e) {
      o = {Outcome::kFailed, e.what()};
    }
    // Each trial starts from a whole cluster: one that a trial left broken fails that trial, with
    // the cause, and is rebuilt, so that the trials after it are not failed by it.
    if (std::string broken = suite.check_and_rebuild(); !broken.empty()) {
      if (o.kind != Outcome::kFailed) o = {Outcome::kFailed, ""};
      o.detail += (o.detail.empty() ? "" : "; ") + std::string("left the cluster broken: ") + broken + "(rebuilt)";
    }
    auto& t = tally[name];
    ++t.trials;
    const char* word = o.kind == Outcome::kSurvived ? "survived" : o.kind == Outcome::kLost ? "lost" : "FAILED";
    (o.kind == Outcome::kSurvived ? t.survived : o.kind == Outcome::kLost ? t.lost : t.failed)++;
    if (o.kind == Outcome::kFailed) failures.push_back(name + ": " + o.detail);
    std::cout << "[" << i + 1 << "/" << order.size() << "] " << name << ": " << word
              << (o.detail.empty() ? "" : " (" + o.detail + ")") << std::endl;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n%-28s %7s %9s %6s %7s\n", "SCENARIO", "TRIALS", "SURVIVED", "LOST", "FAILED");
  Tally all;
  for (const auto& [name, f] : scenarios) {
    auto t = tally[name];
    std::printf("%-28s %7d %9d %6d %7d\n", name.c_str(), t.trials, t.survived, t.lost, t.failed);
    all.trials += t.trials, all.survived += t.survived, all.lost += t.lost, all.failed += t.failed;
  }
  std::printf("%-28s %7d %9d %6d %7d\n", "all", all.trials, all.survived, all.lost, all.failed);
  std::printf("%.0f s, seed %u\n", secs, seed);
  for (const auto& f : failures) std::printf("FAILED %s\n", f.c_str());
  if (keep)
    for (auto* c : {suite.cluster_.get(), suite.netns_cluster_.get()})
      if (c) {
        c->keep();
        std::printf("kept: FERRY_STATE_ROOT=%s ferry --cluster %s ...\n", c->root().c_str(), c->name().c_str());
      }
  return all.failed == 0 ? 0 : 1;
}
