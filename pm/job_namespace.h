// A job's own pid and mount namespaces, so that its processes keep their pids wherever they
// move (docs/CAPTURE-RESTORE.md, "A job's namespace"). Pid 1 there is ferry-job-init
// (pm/job_init/): it mounts the namespace's own /proc, reaps orphans, passes termination
// signals on to the job's main process, and exits when that process ends, which ends every
// process left in the namespace.
//
// The job's processes are children of whoever spawns them here (the agent), not of the init:
// the agent waits for them, signals them and traces them as any child. Inside, their parent
// is outside the namespace, so getppid() returns 0 there.
//
// Used from one thread; spawn() briefly changes where that thread's children are born.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "dipc/status.h"
#include "dipc/unique_fd.h"

namespace ferry::pm {

class JobNamespace {
 public:
  // Starts ferry-job-init (`init`, by default beside this executable) in new pid and mount
  // namespaces, and returns once the namespace's /proc is mounted.
  static Result<std::unique_ptr<JobNamespace>> create(const std::filesystem::path& init = {});
  // Before watch(): stops the init, and with it the namespace and anything spawned in it.
  // After: only lets go of it (it ends with the job's main process).
  ~JobNamespace();
  JobNamespace(const JobNamespace&) = delete;
  JobNamespace& operator=(const JobNamespace&) = delete;

  // The init's pid as we see it. The caller reaps it once it has ended (it is our child).
  pid_t init_pid() const { return init_pid_; }

  // Runs spawn() (pm/spawn.h) so that the child is born in this namespace, with `pid` there
  // (0: the next free one; kRefused when it is taken). `flags` as in SpawnOptions (not
  // CLONE_NEW*). The child's first step should be setns(mount_namespace(), CLONE_NEWNS), so
  // that its root, cwd and /proc are the namespace's; it reports its own failures.
  Result<pid_t> spawn(pid_t pid, uint64_t flags, int (*child)(void*), void* arg);
  int mount_namespace() const { return mount_ns_.get(); }

  // The job's main process, by its pid in the namespace: the init watches it from now on.
  Status watch(pid_t pid_in_namespace);

 private:
  JobNamespace() = default;
  pid_t init_pid_ = -1;
  UniqueFd control_, pid_ns_, mount_ns_;
  bool watched_ = false;
};

// A process's pid in each pid namespace from ours down to its own (/proc/PID/status NSpid):
// one entry for a process of our namespace, two for one in a job's namespace.
Result<std::vector<pid_t>> namespace_pids(pid_t pid);

}  // namespace ferry::pm
