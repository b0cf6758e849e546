// `ferry ps [--json]`: every job of the cluster (from the master's process table, through the
// local agent): gpid, user, node, state, resident memory (MiB), command line and number of migrations.
#include <fmt/format.h>
#include <pwd.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "pm/pm.capnp.h"
#include "runtime/cli/agent_connection.h"

namespace ferry::cli {
namespace {

const char* state_name(pm::wire::ProcessState s) {
  switch (s) {
    case pm::wire::ProcessState::RUNNING: return "running";
    case pm::wire::ProcessState::MIGRATING: return "migrating";
    case pm::wire::ProcessState::EXITED: return "exited";
    case pm::wire::ProcessState::LOST: return "lost";
  }
  return "unknown";
}

std::string user_name(uint32_t uid) {
  if (const passwd* pw = getpwuid(uid)) return pw->pw_name;
  return std::to_string(uid);
}

}  // namespace

int ps(const Context& ctx) {
  auto client = connect_agent(ctx);
  if (!client) {
    std::cerr << "ferry: ps: " << client.error().message << "\n";
    return 1;
  }
  auto r = client.value()->call<pm::wire::ListProcesses, pm::wire::ProcessList>([](auto) {});
  if (!r) {
    std::cerr << "ferry: ps: " << r.error().message << "\n";
    return 1;
  }
  std::vector<pm::wire::ProcessInfo::Reader> procs;
  for (auto p : r.value().get().getProcesses()) procs.push_back(p);
  std::sort(procs.begin(), procs.end(), [](auto a, auto b) { return a.getGpid() < b.getGpid(); });

  if (ctx.json) {
    nlohmann::json out = nlohmann::json::array();
    for (auto p : procs)
      out.push_back({{"gpid", p.getGpid()},           {"uid", p.getUid()},
                     {"user", user_name(p.getUid())}, {"node", p.getNode().cStr()},
                     {"pid", p.getPid()},             {"job_pid", p.getJobPid()},
                     {"state", state_name(p.getState())},
                     {"command", p.getCommand().cStr()}, {"migrations", p.getMigrations()},
                     {"exit_status", p.getExitStatus()}, {"reason", p.getReason().cStr()},
                     {"output", p.getOutput().cStr()}, {"home", p.getHome().cStr()},
                     {"rss_kib", p.getRssKib()},      {"parent", p.getParent()}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  size_t command_width = 7;
  for (auto p : procs) command_width = std::max(command_width, std::min<size_t>(p.getCommand().size(), 60));
  std::cout << fmt::format("{:>6} {:>5} {:<10} {:<6} {:<12} {:>9}  {:<{}} {:>10}\n", "GPID", "PID", "USER", "NODE",
                           "STATE", "RSS", "COMMAND", command_width, "MIGRATIONS");
  for (auto p : procs) {
    std::string state = state_name(p.getState());
    if (p.getState() == pm::wire::ProcessState::EXITED) state = fmt::format("exited({})", p.getExitStatus());
    bool alive = p.getState() == pm::wire::ProcessState::RUNNING || p.getState() == pm::wire::ProcessState::MIGRATING;
    std::string rss = alive && p.getRssKib() > 0 ? fmt::format("{:.1f}M", double(p.getRssKib()) / 1024.0) : "-";  // known where the CLI is
    std::string command = p.getCommand().cStr();
    if (command.size() > 60) command = command.substr(0, 57) + "...";
    std::string job_pid = p.getJobPid() ? std::to_string(p.getJobPid()) : "-";  // inside the job: the same everywhere
    std::cout << fmt::format("{:>6} {:>5} {:<10} {:<6} {:<12} {:>9}  {:<{}} {:>10}\n", p.getGpid(), job_pid,
                             user_name(p.getUid()), p.getNode().cStr(), state, rss, command, command_width,
                             p.getMigrations());
  }
  return 0;
}

}  // namespace ferry::cli
