// Agent: the process management agent of a node (PMA). It launches jobs, keeps the node's
// table of the jobs it holds, routes operations on jobs by global pid (vproc) to the agent
// that holds them, and runs both ends of a migration.
//
// Contract:
// - Jobs run as the calling user, in its directory, with its environment; stdout and stderr go
//   to a log in the node's state directory (`output` in the process table), which a restored
//   job reopens at the same offset: its output continues in the same file on any node (a
//   local cluster shares one file system; a real one needs the state directory shared).
// - A user may act only on their own jobs; root on all.
// - Migration (source side): freeze, capture, export the memory to the local pager (not yet
//   adopted), offer to the destination agent. The destination installs (lazy restore, pager
//   import), commits at the master, resumes, answers. Then the source hands the frozen process
//   over to its pager as a memory shell and forwards the operations it queued meanwhile. On a
//   refusal or an error before the commit the job resumes where it was and the queued
//   operations are delivered here. When the source cannot tell whether the destination
//   committed (timeout), it asks the master to cancel the migration: the master's answer
//   (committed or cancelled) decides.
// - Modes: lazy (the above); eager (the destination commits and resumes only once every page
//   has arrived: stop-and-copy); precopy (before step 1 the source's pager copies the running
//   job's memory to the destination's pager round after round; then a lazy migration in which
//   only what the job wrote since its copy crosses the network). A precopy that fails leaves the
//   job running here, untouched.
// - Signals to a migrating job are queued at the source, in order, and delivered exactly once;
//   after the move, signals sent to it directly wait at the destination until the source's
//   queue has been forwarded (an end marker says so, or 15 s pass), so none overtakes them.
// - A (re)started agent asks the master which jobs its node holds: those still running are
//   taken back (their exit status is known only if seen as a zombie: -1 otherwise), the others
//   are reported lost with the reason. A stopping agent (SIGTERM) kills its jobs; a crashed one
//   (SIGKILL) leaves them running for its successor. Every few seconds the agent compares its
//   jobs with the master's table and kills those the master no longer has running here.
// - Loop thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "dipc/port.h"
#include "dipc/unique_fd.h"
#include "pm/offer_payload.h"

namespace ferry::pm {

struct AgentOptions {
  std::string node;
  std::filesystem::path state_dir;  // this node's: jobs/ and pager.sock are here
  std::chrono::milliseconds timeout{2000};
};

// How a migration moves the job's memory (pm.capnp MigrationMode; docs/MIGRATION.md, "Modes").
struct MigrationPlan {
  enum class Mode { kLazy, kEager, kPrecopy } mode = Mode::kLazy;
  uint32_t precopy_rounds = 4;
  uint64_t precopy_id = 0;  // once the source's pager runs the precopy
};

class Agent {
 public:
  Agent(dipc::Port& port, AgentOptions options);
  ~Agent();

 private:
  struct Job {
    uint64_t gpid = 0;
    pid_t pid = 0;
    uint32_t uid = 0;
    std::string label;
    bool migrating = false;  // frozen, between step 1 and the commit or abort
    bool moving = false;     // a migration was asked for (it may wait for pages first)
    std::deque<int> queued;  // signals that arrived while migrating
    UniqueFd uffd;           // a lazily restored job's userfaultfd (a copy: the pager has one)
    std::string import_label;  // the pager import that serves its memory, if any
    bool adopted = false;      // found again after an agent restart: not our child
    int pager_strikes = 0;     // checks in a row that found its import's pager gone
    std::string lost_reason;   // set when the agent itself killed it for good reason
    // Just arrived by migration `awaiting_forwards`: signals sent to it directly wait until the
    // source has forwarded those it queued during the migration (they came first).
    std::string awaiting_forwards;
    std::deque<int> held_direct;
  };
  struct Migration;
  struct Installed;  // the destination's side of a migration, installed, until it runs or is undone

  void serve();
  void run(dipc::Request& req);
  void signal(dipc::Request& req);
  void read_output(dipc::Request& req);
  void migrate(dipc::Request& req);
  void offer(dipc::Request& req);
  void offer_part(dipc::Request& req);  // ahead of an Offer too large for one message
  void drop_expired_parts();            // parts whose Offer never came (HeldPayloads::expire)
  void list(dipc::Request& req);
  // Asks the master about `gpid`, checks the caller may act on it, then calls `then`.
  void with_process(dipc::Request& req, uint64_t gpid,
                    std::function<void(std::shared_ptr<dipc::Request>, const std::string& node, uint32_t pid)> then);
  void deliver(Job& job, int sig);
  // A signal sent to the job now (not one forwarded from its previous node).
  void deliver_direct(Job& job, int sig);
  // The forwards of migration `id` are all in (or will never come): held signals go.
  void forwards_done(uint64_t gpid, const std::string& id, const char* why);
  void start_migration(std::shared_ptr<dipc::Request> req, Job& job, const std::string& to, MigrationPlan plan);
  // Precopy (agent_precopy.cc): the job makes a userfaultfd for the pager's write tracking, then
  // runs on while the pager copies; once it has converged, start_migration.
  void start_precopy(std::shared_ptr<dipc::Request> req, Job& job, const std::string& to, MigrationPlan plan);
  void poll_precopy(std::shared_ptr<dipc::Request> req, uint64_t gpid, const std::string& to, MigrationPlan plan);
  void end_precopy(uint64_t precopy_id, bool committed, const std::string& reason);
  // Eager (destination): resumes nothing until every page arrived, then commits.
  void wait_all_pages(std::shared_ptr<Installed> in, std::chrono::steady_clock::time_point deadline);
  void commit_installed(std::shared_ptr<Installed> in);
  void drop_stage(uint64_t stage_id, const std::string& token, const std::string& reason);
  // A job whose pages are still arriving from its previous hop migrates once they all have.
  void when_pages_arrived(uint64_t gpid, std::chrono::steady_clock::time_point deadline, std::function<void(Status)> then);
  // The local pager's imports, label -> state ("fetching", "complete", "failed: why", ...), asked
  // over the fabric without blocking the loop (its heartbeats must not wait on a busy pager).
  // An error when the pager does not answer within a second.
  using ImportStates = std::map<std::string, std::string>;
  void ask_import_states(std::function<void(Result<ImportStates>)> done);
  // Ends a job that was reaped: asks the pager why when it died of SIGKILL while its memory was
  // still arriving (the pager kills it when the memory's source is lost, and says so), then
  // reports it to the master: lost with the cause, or exited.
  void job_ended(Job job, int code, bool killed);
  void why_killed(uint64_t gpid, pid_t pid, int code, const std::string& label, int attempt);
  // Logs and reports to the master: lost (with the reason) when `lost_reason` is set, else exited.
  void end_job(uint64_t gpid, pid_t pid, int code, const std::string& lost_reason);
  void send_offer_parts(std::shared_ptr<Migration> m, std::vector<OfferPayload> parts, std::chrono::milliseconds timeout,
                        std::function<void()> then);
  void end_migration(std::shared_ptr<Migration> m, Status outcome);
  void watch_destination(std::shared_ptr<Migration> m);
  void settle_unknown(std::shared_ptr<Migration> m, Error e);
  void forward_signals(const std::string& to, uint64_t gpid, const std::string& migration,
                       std::shared_ptr<std::deque<int>> signals, size_t next, int attempt);
  // The destination's commit did not answer: the master decides (resume here or undo).
  void settle_commit(std::shared_ptr<Installed> in, Error e);
  void resume_installed(std::shared_ptr<Installed> in, double commit_ms);
  void reap();
  // Jobs whose memory is still arriving: killed (and reported lost) when the pager serving it is
  // gone, since nothing else would ever fill their missing pages; done imports are forgotten.
  void watch_imports();
  // After a restart: take back this node's jobs from the master's table, or report them lost.
  void recover_jobs();
  static bool adopted_job_ended(const Job& job, int* code);
  // Kills local jobs the master no longer has running here (declared lost while this node was
  // cut off or its agent away): never two copies, never one nobody tracks.
  void fence_jobs();
  void report_end(uint64_t gpid, int status, bool lost, const std::string& reason);
  std::filesystem::path pager_socket() const { return options_.state_dir / "pager.sock"; }

  dipc::Port& port_;
  AgentOptions options_;
  std::map<uint64_t, Job> jobs_;
  HeldPayloads held_payloads_{1ull << 30, std::chrono::seconds(60)};  // parts that wait for their Offer
  std::set<std::string> offers_seen_;              // migration ids offered here (a duplicate is ignored)
  std::deque<std::string> forwards_seen_;           // forwarded signal ids delivered here, latest last
  // Frozen processes handed to the pager, and the inits of job namespaces (pm/job_namespace.h):
  // reaped when they end.
  std::set<pid_t> shells_;
  uint64_t next_migration_ = 1;
  // Migration ids are "m<seq>@<node>.<incarnation>": unique across restarts of this agent (the
  // master remembers every id it committed or cancelled).
  std::string incarnation_;
  dipc::EventLoop::TimerId reaper_ = 0, import_watch_ = 0, fence_ = 0;
  bool watching_imports_ = false;  // a watch_imports() question is out
};

}  // namespace ferry::pm
