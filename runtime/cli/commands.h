// The `ferry` command line: each command is a function from parsed options to an exit status,
// printing what a person needs and errors that name the problem. Internal to runtime/cli/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/cluster/local_cluster.h"

namespace ferry::cli {

struct Context {
  runtime::ClusterLayout layout;
  std::string node;  // the CLI's local node ("" = the cluster's first node)
  bool json = false;
};

int cluster_up(const Context& ctx, const runtime::ClusterUpOptions& options);
int cluster_down(const Context& ctx);
int cluster_kill(const Context& ctx, const std::string& node);
// action: cut, heal or restart.
int cluster_node_action(const Context& ctx, const std::string& action, const std::string& node);
int nodes(const Context& ctx);
int ping(const Context& ctx, const std::string& target, int count, int size);
int checkpoint(int pid, const std::string& dir, bool leave_running);
int restore(const std::string& dir);
// Imports of every node, or --node's; with `gpid`, those of that job's migrations on every node.
int stat(const Context& ctx, std::optional<uint64_t> gpid);

// Fault injection on NODE's daemons ("master": the master). count 0: every time.
int fault_set(const Context& ctx, const std::string& node, const std::string& point, const std::string& action,
              int delay_ms, int count);
int fault_clear(const Context& ctx, const std::string& node, const std::string& point);
int fault_list(const Context& ctx, const std::string& node);

// Jobs (global pids): every request goes to the local agent, which routes it to the job's node.
int run(const Context& ctx, const std::vector<std::string>& argv, const std::string& node, bool detach);
int ps(const Context& ctx);
int kill_job(const Context& ctx, uint64_t gpid, const std::string& signal);
int wait_job(const Context& ctx, uint64_t gpid);
enum class MigrateMode { kLazy, kEager, kPrecopy };
// rounds: the precopy's at most.
int migrate(const Context& ctx, uint64_t gpid, const std::string& to, bool wait, MigrateMode mode, uint32_t rounds);

// Whether a failed request is worth repeating: a timeout, or the daemon briefly unreachable.
inline bool transient(const Error& e) {
  return e.code == ErrorCode::kTimeout || e.code == ErrorCode::kUnreachable || e.code == ErrorCode::kUnavailable;
}

// The CLI's exit status for a job's exit status: itself if 0..255, else 255.
inline int exit_code(int32_t status) { return status >= 0 && status <= 255 ? status : 255; }

}  // namespace ferry::cli
