// Starting and stopping the daemons of a local cluster. Internal to runtime/cluster/.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "dipc/status.h"

namespace ferry::runtime {

// Starts `binary args...` detached (own session, stdin from /dev/null, stdout and stderr
// appended to `log`), inside network namespace `netns` when not empty. Returns its pid.
// A namespace that does not exist is an error, checked before anything starts.
Result<int> spawn_daemon(const std::filesystem::path& binary, const std::vector<std::string>& args,
                         const std::filesystem::path& log, const std::string& netns);

// True when `pid` is alive and runs one of Ferry's daemons (a recycled pid is not ours).
bool is_ferry_daemon(int pid);

// SIGTERM to each, then SIGKILL to whatever still runs after `grace`; waits until all are
// gone. Returns how many needed SIGKILL.
int stop_daemons(const std::vector<int>& pids, std::chrono::milliseconds grace);

// The directory of the running executable (where ferry-master and friends live beside ferry).
std::filesystem::path own_bin_dir();

}  // namespace ferry::runtime
