// ProcessTable: the master's table of jobs (vproc): global pids, where each job is, its state,
// and the commit point of every migration.
//
// Contract:
// - RegisterProcess gives a new gpid (never reused). ProcessEnded records an exit status or a
//   loss with its reason, once; later reports for that gpid are ignored.
// - CommitMigration moves a job to its destination iff it is running at `from` and the
//   migration was not cancelled; repeating a commit that succeeded succeeds (idempotent).
//   CancelMigration cancels a migration that has not committed and says whether it had: so
//   for every migration exactly one of "committed" and "cancelled" holds, and a source that
//   lost track of its destination learns which.
// - Served on the master's port; any authenticated daemon may report, a user may list.
// - Durable: with a `store` file, every change is written there (atomically, before the reply
//   that depends on it), and a new table loads it: a restarted master knows every job, every
//   exit status and every commit/cancel decision its predecessor had answered.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "dipc/port.h"
#include "pm/pm.capnp.h"

namespace ferry::pm {

class ProcessTable {
 public:
  // `store`: where the table is kept ("" keeps it in memory only). Fails if it is unreadable.
  static Result<std::unique_ptr<ProcessTable>> open(dipc::Port& port, std::filesystem::path store);

  struct Entry {
    uint64_t gpid = 0;
    uint32_t uid = 0;
    std::string node, home, command, output, reason;
    uint32_t pid = 0;
    uint32_t job_pid = 0;  // inside its job's namespace
    wire::ProcessState state = wire::ProcessState::RUNNING;
    uint32_t migrations = 0;
    int32_t exit_status = 0;
  };
  const Entry* find(uint64_t gpid) const;
  // Nodes holding jobs that are running or migrating.
  std::set<std::string> nodes_with_jobs() const;
  // The jobs on a node that died are lost with that reason.
  void node_died(const std::string& node, const std::string& why);
  static void fill(const Entry& e, wire::ProcessInfo::Builder out);

 private:
  ProcessTable(dipc::Port& port, std::filesystem::path store);
  void serve();
  Status load();
  void save();  // logs an error if the store cannot be written

  dipc::Port& port_;
  std::filesystem::path store_;
  uint64_t next_gpid_ = 1;
  std::map<uint64_t, Entry> entries_;
  std::set<std::string> committed_, cancelled_;  // migration ids
};

}  // namespace ferry::pm
