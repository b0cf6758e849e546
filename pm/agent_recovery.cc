// A restarted agent finds its node's jobs again: the master's table says which jobs it held;
// those whose process still runs (same pid, same owner, same program) are taken back, the
// others are reported lost. None is silently forgotten.
#include <spdlog/spdlog.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "pm/agent.h"
#include "pm/pm.capnp.h"

namespace ferry::pm {
namespace {

// "R", "S", "Z", ... or "" when there is no such process; `exit_code` the wait status of a zombie.
std::string proc_state(pid_t pid, int* exit_code = nullptr) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return "";
  auto paren = line.rfind(')');
  if (paren == std::string::npos) return "";
  std::istringstream rest(line.substr(paren + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  // Field 3 is f[0]; exit_code is field 52.
  if (exit_code && f.size() >= 50) *exit_code = std::stoi(f[49]);
  return f.empty() ? "" : f[0];
}

bool same_program(pid_t pid, uint32_t uid, const std::string& command) {
  struct stat st {};
  if (::stat(("/proc/" + std::to_string(pid)).c_str(), &st) != 0 || st.st_uid != uid) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string argv0;
  std::getline(in, argv0, '\0');
  return !argv0.empty() && command.rfind(argv0, 0) == 0;
}

}  // namespace

void Agent::recover_jobs() {
  port_.call<wire::ListProcesses, wire::ProcessList>(
      "master", [](auto) {},
      [this](Result<dipc::Message<wire::ProcessList>> r) {
        if (!r) {  // the master is not reachable yet
          port_.loop().after(std::chrono::milliseconds(500), [this] { recover_jobs(); });
          return;
        }
        int found = 0, lost = 0;
        for (auto p : r.value().get().getProcesses()) {
          if (p.getNode() != options_.node) continue;
          uint64_t gpid = p.getGpid();
          if (p.getState() == wire::ProcessState::LOST && same_program(pid_t(p.getPid()), p.getUid(), p.getCommand())) {
            // Declared lost while this agent was away, yet still running: a copy nobody tracks.
            spdlog::info("{}: gpid {} was declared lost ({}) but pid {} still runs: killed", port_.name(), gpid,
                         p.getReason().cStr(), p.getPid());
            ::kill(pid_t(p.getPid()), SIGKILL);
            continue;
          }
          if (p.getState() != wire::ProcessState::RUNNING && p.getState() != wire::ProcessState::MIGRATING) continue;
          if (jobs_.count(gpid)) continue;
          pid_t pid = pid_t(p.getPid());
          std::string state = proc_state(pid);
          if (!state.empty() && state != "Z" && state != "X" && same_program(pid, p.getUid(), p.getCommand())) {
            Job& job = jobs_[gpid];
            job.gpid = gpid;
            job.pid = pid;
            job.uid = p.getUid();
            job.label = "gpid " + std::to_string(gpid);
            job.adopted = true;
            ++found;
            spdlog::info("{}: gpid {} found again after a restart of this agent: pid {} ({})", port_.name(), gpid, pid,
                         p.getCommand().cStr());
          } else {
            ++lost;
            std::string why = "its agent on " + options_.node + " restarted and pid " + std::to_string(pid) + " was gone";
            spdlog::info("{}: gpid {} lost: {}", port_.name(), gpid, why);
            report_end(gpid, 255, true, why);
          }
        }
        spdlog::info("{}: jobs recovered from the master's table: {} found again, {} lost", port_.name(), found, lost);
      });
}

void Agent::fence_jobs() {
  bool any = false;
  for (const auto& [gpid, job] : jobs_) any = any || !job.migrating;
  if (!any) return;
  port_.call<wire::ListProcesses, wire::ProcessList>(
      "master", [](auto) {},
      [this](Result<dipc::Message<wire::ProcessList>> r) {
        if (!r) return;  // the master is away: nothing to compare with
        for (auto p : r.value().get().getProcesses()) {
          auto it = jobs_.find(p.getGpid());
          if (it == jobs_.end() || it->second.migrating || !it->second.lost_reason.empty()) continue;
          bool here = p.getNode() == options_.node && (p.getState() == wire::ProcessState::RUNNING ||
                                                       p.getState() == wire::ProcessState::MIGRATING);
          if (here) continue;
          Job& job = it->second;
          job.lost_reason = p.getState() == wire::ProcessState::LOST
                                ? std::string(p.getReason().cStr())
                                : "the master places it on " + std::string(p.getNode().cStr()) + ", not here";
          spdlog::warn("{}: gpid {}: the master no longer has it running here ({}); killing pid {}", port_.name(),
                       job.gpid, job.lost_reason, job.pid);
          ::kill(job.pid, SIGKILL);
        }
      });
}

// An adopted job is not our child: it is watched through /proc. Its exit status can be read
// only while it is a zombie (its new parent reaps it); otherwise it is unknown (-1).
bool Agent::adopted_job_ended(const Job& job, int* code) {
  int status = 0;
  std::string state = proc_state(job.pid, &status);
  if (!state.empty() && state != "Z" && state != "X") return false;
  if (state == "Z")
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  else
    *code = -1;
  return true;
}

}  // namespace ferry::pm
