// The agent's jobs: launching, routing operations by gpid, output, reaping.
#include "pm/agent.h"

#include <fcntl.h>
#include <sched.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <algorithm>
#include <fstream>
#include <random>

#include "dipc/local_client.h"
#include "pm/job_namespace.h"
#include "pm/spawn.h"
#include "pm/pm.capnp.h"
#include "xmm/xmm.capnp.h"

namespace ferry::pm {
namespace {

constexpr size_t kMaxOutputChunk = 64 * 1024;

struct LaunchChild {
  int mount_ns, report, out;
  uint32_t uid;
  gid_t gid;
  const char* cwd;
  char** argv;
  char** envp;
};

// The job's side, in its namespaces, on a copy of our memory.
int start_job(void* p) {
  auto* c = static_cast<LaunchChild*>(p);
  auto fail = [&](int e) {
    [[maybe_unused]] ssize_t n = ::write(c->report, &e, sizeof e);
    return 127;
  };
  if (::setns(c->mount_ns, CLONE_NEWNS) != 0) return fail(errno);
  ::setsid();
  int devnull = ::open("/dev/null", O_RDONLY);
  ::dup2(devnull, 0);
  ::dup2(c->out, 1);
  ::dup2(c->out, 2);
  ::close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
  if (c->uid != 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(c->gid, c->gid, c->gid) != 0 ||
                      ::setresuid(c->uid, c->uid, c->uid) != 0))
    return fail(errno);
  if (::chdir(c->cwd) != 0) return fail(errno);
  ::execvpe(c->argv[0], c->argv, c->envp);
  return fail(errno);
}

struct Launched {
  pid_t pid = 0;       // as the agent sees it
  pid_t init_pid = 0;  // its namespace's init, the agent's child too
  pid_t job_pid = 0;   // its pid inside the namespace
};

// Starts argv as `uid` in `cwd` with `env` in a namespace of its own (pm/job_namespace.h),
// stdout and stderr appended to `output`, stdin /dev/null, in a session of its own. errno of a
// failed exec comes back through a pipe.
Result<Launched> launch(const std::vector<std::string>& argv, const std::string& cwd, const std::vector<std::string>& env,
                        uint32_t uid, const std::string& output) {
  auto ns = JobNamespace::create();
  if (!ns) return ns.error();
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return make_error(ErrorCode::kUnavailable, errno_message("pipe", errno));
  UniqueFd from_child(report[0]), to_parent(report[1]);
  UniqueFd out(::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!out) return make_error(ErrorCode::kUnavailable, errno_message("create " + output, errno));
  if (uid != 0 && ::fchown(out.get(), uid, uid) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message("chown " + output, errno));
  struct passwd* pw = uid != 0 ? ::getpwuid(uid) : nullptr;
  std::vector<char*> a, e;
  for (const auto& x : argv) a.push_back(const_cast<char*>(x.c_str()));
  a.push_back(nullptr);
  for (const auto& x : env) e.push_back(const_cast<char*>(x.c_str()));
  e.push_back(nullptr);
  LaunchChild child{ns.value()->mount_namespace(), to_parent.get(), out.get(), uid, pw ? pw->pw_gid : gid_t(uid),
                    cwd.c_str(), a.data(), e.data()};
  auto pid = ns.value()->spawn(0, 0, start_job, &child);
  if (!pid) return pid.error();
  to_parent.reset();
  int child_err = 0;
  ssize_t n = ::read(from_child.get(), &child_err, sizeof child_err);
  if (n == sizeof child_err) {
    ::waitpid(pid.value(), nullptr, 0);
    return make_error(ErrorCode::kInvalid, "cannot run " + argv[0] + ": " + std::strerror(child_err));
  }
  auto inside = namespace_pids(pid.value());
  Status watched = inside && inside.value().size() == 2
                       ? ns.value()->watch(inside.value()[1])
                       : make_error(ErrorCode::kUnavailable, "pid " + std::to_string(pid.value()) + " is not in its job's namespace");
  if (!watched) {
    ::kill(pid.value(), SIGKILL);
    ::waitpid(pid.value(), nullptr, 0);
    return watched.error();
  }
  return Launched{pid.value(), ns.value()->init_pid(), inside.value()[1]};
}

// A request the master did not answer: say what that means for the user.
Error about_master(const Error& e) {
  if (e.code != ErrorCode::kTimeout && e.code != ErrorCode::kUnavailable && e.code != ErrorCode::kUnreachable) return e;
  return make_error(ErrorCode::kUnavailable, "the master is unreachable (" + e.message +
                                                 "): running jobs keep running, but new jobs, migrations and lookups "
                                                 "are refused until it is back");
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

}  // namespace

Agent::Agent(dipc::Port& port, AgentOptions options) : port_(port), options_(std::move(options)) {
  {
    std::random_device rd;
    char buf[16];
    std::snprintf(buf, sizeof buf, "%06x", rd() & 0xffffff);
    incarnation_ = buf;
  }
  std::error_code ec;
  std::filesystem::create_directories(options_.state_dir / "jobs", ec);
  port_.fault_point<wire::Offer>("offer", dipc::FaultSite::kRequestIn,
                                 "destination agent: the offer arrives (step 2; install follows)");
  port_.fault_point<wire::CommitMigration>("commit", dipc::FaultSite::kReplyIn,
                                           "destination agent: the master's answer to its commit arrives (step 4)");
  port_.fault_point<wire::SignalProcess>("forward", dipc::FaultSite::kRequestIn,
                                         "an agent: a signal routed or forwarded to its job arrives");
  port_.faults().declare({"freeze", dipc::FaultSite::kLocal, 0, "source agent: the job was just frozen (step 1)", ""});
  port_.faults().declare({"resume", dipc::FaultSite::kLocal, 0, "destination agent: committed, about to resume (step 5)", ""});
  serve();
  reaper_ = port_.loop().every(std::chrono::milliseconds(20), [this] { reap(); });
  import_watch_ = port_.loop().every(std::chrono::milliseconds(500), [this] { watch_imports(); });
  fence_ = port_.loop().every(std::chrono::seconds(3), [this] { fence_jobs(); });
  recover_jobs();
}

// The agent's jobs do not outlive it (a local cluster's `down` leaves nothing running).
Agent::~Agent() {
  port_.loop().cancel(reaper_);
  port_.loop().cancel(import_watch_);
  port_.loop().cancel(fence_);
  for (auto& [gpid, job] : jobs_) {
    ::kill(job.pid, SIGKILL);
    ::waitpid(job.pid, nullptr, 0);
    spdlog::info("{}: gpid {} (pid {}) killed: the agent is stopping", port_.name(), gpid, job.pid);
  }
  for (pid_t shell : shells_) ::kill(shell, SIGKILL);  // frozen copies not (or no longer) adopted
}

void Agent::serve() {
  port_.serve<wire::RunJob>([this](dipc::Request& req) { run(req); });
  port_.serve<wire::SignalProcess>([this](dipc::Request& req) { signal(req); });
  port_.serve<wire::ReadOutput>([this](dipc::Request& req) { read_output(req); });
  port_.serve<wire::MigrateProcess>([this](dipc::Request& req) { migrate(req); });
  port_.serve<wire::Offer>([this](dipc::Request& req) { offer(req); });
  port_.serve<wire::OfferPart>([this](dipc::Request& req) { offer_part(req); });
  port_.serve<wire::ListProcesses>([this](dipc::Request& req) { list(req); });
  port_.serve<wire::LookupProcess>([this](dipc::Request& req) {
    auto held = std::make_shared<dipc::Request>(std::move(req));
    uint64_t gpid = held->body<wire::LookupProcess>().getGpid();
    port_.call<wire::LookupProcess, wire::ProcessInfo>(
        "master", [&](wire::LookupProcess::Builder b) { b.setGpid(gpid); },
        [held](Result<dipc::Message<wire::ProcessInfo>> r) {
          if (!r) return held->fail(about_master(r.error()));
          held->relay(r.value().inbound());
        });
  });
}

void Agent::run(dipc::Request& req) {
  auto r = req.body<wire::RunJob>();
  std::string node = r.getNode();
  auto held = std::make_shared<dipc::Request>(std::move(req));
  if (!node.empty() && node != options_.node) {
    if (!held->caller().local) return held->fail(ErrorCode::kInvalid, "RunJob for " + node + " reached " + options_.node);
    // Relay to that node's agent, on behalf of the caller.
    auto body = held->body<wire::RunJob>();
    port_.call<wire::RunJob, wire::RunReply>(
        "agent@" + node,
        [&](wire::RunJob::Builder b) {
          b.setArgv(body.getArgv());
          b.setCwd(body.getCwd());
          b.setEnv(body.getEnv());
          b.setNode(node);
        },
        [held, node](Result<dipc::Message<wire::RunReply>> rep) {
          if (!rep) return held->fail(rep.error().code, "node " + node + ": " + rep.error().message);
          held->relay(rep.value().inbound());
        },
        dipc::CallOptions{std::chrono::milliseconds(0), held->caller().uid});
    return;
  }
  if (!held->caller().local && held->from().rfind("agent@", 0) != 0)
    return held->fail(ErrorCode::kUnauthorized, "jobs are launched through an agent");
  std::vector<std::string> argv, env;
  for (auto a : r.getArgv()) argv.push_back(a);
  for (auto e : r.getEnv()) env.push_back(e);
  if (argv.empty()) return held->fail(ErrorCode::kInvalid, "run: no command");
  uint32_t uid = held->caller().uid;
  static uint64_t seq = 0;
  std::string output = (options_.state_dir / "jobs" / ("job-" + std::to_string(::getpid()) + "-" + std::to_string(++seq) + ".out")).string();
  auto launched = launch(argv, r.getCwd(), env, uid, output);
  if (!launched) return held->fail(launched.error());
  shells_.insert(launched.value().init_pid);  // reaped once the job has ended
  Result<pid_t> pid = launched.value().pid;
  std::string command = join(argv);
  port_.call<wire::RegisterProcess, wire::RegisterReply>(
      "master",
      [&](wire::RegisterProcess::Builder b) {
        b.setNode(options_.node);
        b.setPid(uint32_t(pid.value()));
        b.setJobPid(uint32_t(launched.value().job_pid));
        b.setUid(uid);
        b.setCommand(command);
        b.setOutput(output);
      },
      [this, held, p = pid.value(), uid, output](Result<dipc::Message<wire::RegisterReply>> rep) {
        if (!rep) {
          ::kill(p, SIGKILL);
          return held->fail(about_master(rep.error()));
        }
        uint64_t gpid = rep.value().get().getGpid();
        Job& job = jobs_[gpid];
        job.gpid = gpid;
        job.pid = p;
        job.uid = uid;
        job.label = "gpid " + std::to_string(gpid);
        spdlog::info("{}: gpid {} started as pid {} for uid {}", port_.name(), gpid, p, uid);
        held->reply<wire::RunReply>([&](wire::RunReply::Builder b) {
          b.setGpid(gpid);
          b.setNode(options_.node);
          b.setPid(uint32_t(p));
          b.setOutput(output);
        });
      });
}

void Agent::with_process(dipc::Request& req, uint64_t gpid,
                         std::function<void(std::shared_ptr<dipc::Request>, const std::string&, uint32_t)> then) {
  auto held = std::make_shared<dipc::Request>(std::move(req));
  port_.call<wire::LookupProcess, wire::ProcessInfo>(
      "master", [&](wire::LookupProcess::Builder b) { b.setGpid(gpid); },
      [held, gpid, then = std::move(then)](Result<dipc::Message<wire::ProcessInfo>> r) {
        if (!r) return held->fail(about_master(r.error()));
        auto info = r.value().get();
        if (!held->caller().is_root() && info.getUid() != held->caller().uid)
          return held->fail(ErrorCode::kUnauthorized, "gpid " + std::to_string(gpid) + " belongs to uid " +
                                                          std::to_string(info.getUid()) + ", not to uid " +
                                                          std::to_string(held->caller().uid));
        if (info.getState() == wire::ProcessState::EXITED || info.getState() == wire::ProcessState::LOST)
          return held->fail(ErrorCode::kNotFound, "gpid " + std::to_string(gpid) + " has ended");
        then(held, info.getNode(), info.getPid());
      });
}

void Agent::deliver(Job& job, int sig) {
  if (job.migrating) {
    job.queued.push_back(sig);
    spdlog::info("{}: gpid {}: signal {} queued during its migration", port_.name(), job.gpid, sig);
    return;
  }
  ::kill(job.pid, sig);
  spdlog::info("{}: gpid {}: signal {} delivered to pid {}", port_.name(), job.gpid, sig, job.pid);
}

void Agent::deliver_direct(Job& job, int sig) {
  if (!job.awaiting_forwards.empty()) {
    job.held_direct.push_back(sig);
    spdlog::info("{}: gpid {}: signal {} held until the signals queued during migration {} are forwarded", port_.name(),
                 job.gpid, sig, job.awaiting_forwards);
    return;
  }
  deliver(job, sig);
}

void Agent::forwards_done(uint64_t gpid, const std::string& id, const char* why) {
  auto it = jobs_.find(gpid);
  if (it == jobs_.end() || it->second.awaiting_forwards != id) return;
  Job& job = it->second;
  job.awaiting_forwards.clear();
  if (!job.held_direct.empty())
    spdlog::info("{}: gpid {}: {}: {} held signals delivered", port_.name(), gpid, why, job.held_direct.size());
  while (!job.held_direct.empty()) {
    deliver(job, job.held_direct.front());
    job.held_direct.pop_front();
  }
}

void Agent::signal(dipc::Request& req) {
  auto r = req.body<wire::SignalProcess>();
  uint64_t gpid = r.getGpid();
  int sig = r.getSignal();
  std::string forward = r.getForwardId();
  bool from_agent = !req.caller().local && req.from().rfind("agent@", 0) == 0;
  // Signal 0 with a forward id ".../end": the source's queue for that migration is all forwarded.
  const std::string end = "/end";
  if (from_agent && sig == 0 && forward.size() > end.size() && forward.ends_with(end)) {
    forwards_done(gpid, forward.substr(0, forward.size() - end.size()), "every queued signal was forwarded");
    return req.reply<dipc::wire::Empty>([](auto) {});
  }
  if (sig <= 0 || sig >= NSIG) return req.fail(ErrorCode::kInvalid, "no signal " + std::to_string(sig));
  // From another agent: it already checked the caller's rights; deliver if the job is here.
  if (from_agent) {
    if (!forward.empty() && std::find(forwards_seen_.begin(), forwards_seen_.end(), forward) != forwards_seen_.end()) {
      spdlog::info("{}: gpid {}: signal {} ({}) was delivered already", port_.name(), gpid, sig, forward);
      return req.reply<dipc::wire::Empty>([](auto) {});
    }
    if (auto it = jobs_.find(gpid); it != jobs_.end()) {
      if (!forward.empty()) {
        forwards_seen_.push_back(forward);
        if (forwards_seen_.size() > 4096) forwards_seen_.pop_front();
        deliver(it->second, sig);
      } else {
        deliver_direct(it->second, sig);
      }
      return req.reply<dipc::wire::Empty>([](auto) {});
    }
  }
  with_process(req, gpid, [this, gpid, sig](std::shared_ptr<dipc::Request> held, const std::string& node, uint32_t) {
    if (auto it = jobs_.find(gpid); it != jobs_.end()) {
      deliver_direct(it->second, sig);
      return held->reply<dipc::wire::Empty>([](auto) {});
    }
    if (node == options_.node) return held->fail(ErrorCode::kNotFound, "gpid " + std::to_string(gpid) + " is not on " + node);
    port_.call<wire::SignalProcess, dipc::wire::Empty>(
        "agent@" + node,
        [&](wire::SignalProcess::Builder b) {
          b.setGpid(gpid);
          b.setSignal(sig);
        },
        [held](Result<dipc::Message<dipc::wire::Empty>> r) {
          if (!r) return held->fail(r.error());
          held->reply<dipc::wire::Empty>([](auto) {});
        },
        dipc::CallOptions{std::chrono::milliseconds(0), held->caller().uid});
  });
}

void Agent::read_output(dipc::Request& req) {
  auto r = req.body<wire::ReadOutput>();
  uint64_t gpid = r.getGpid(), offset = r.getOffset();
  auto held = std::make_shared<dipc::Request>(std::move(req));
  port_.call<wire::LookupProcess, wire::ProcessInfo>(
      "master", [&](wire::LookupProcess::Builder b) { b.setGpid(gpid); },
      [held, offset](Result<dipc::Message<wire::ProcessInfo>> rep) {
        if (!rep) return held->fail(about_master(rep.error()));
        auto info = rep.value().get();
        if (!held->caller().is_root() && info.getUid() != held->caller().uid)
          return held->fail(ErrorCode::kUnauthorized, "gpid " + std::to_string(info.getGpid()) + " is not yours");
        std::string path = info.getOutput();
        std::vector<char> buf(kMaxOutputChunk);
        ssize_t n = 0;
        if (int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
          n = ::pread(fd, buf.data(), buf.size(), off_t(offset));
          ::close(fd);
        }
        if (n < 0) n = 0;
        held->reply<wire::OutputChunk>([&](wire::OutputChunk::Builder b) {
          b.setData(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(buf.data()), size_t(n)));
          b.setInfo(info);
        });
      });
}

void Agent::list(dipc::Request& req) {
  auto held = std::make_shared<dipc::Request>(std::move(req));
  port_.call<wire::ListProcesses, wire::ProcessList>(
      "master", [](auto) {},
      [this, held](Result<dipc::Message<wire::ProcessList>> r) {
        if (!r) return held->fail(about_master(r.error()));
        auto list = r.value().get().getProcesses();
        held->reply<wire::ProcessList>([&](wire::ProcessList::Builder b) {
          auto out = b.initProcesses(list.size());
          for (uint32_t i = 0; i < list.size(); ++i) {
            out.setWithCaveats(i, list[i]);
            // What this node can see: the resident memory of its own jobs.
            if (auto it = jobs_.find(list[i].getGpid()); it != jobs_.end()) {
              std::ifstream st("/proc/" + std::to_string(task_with_memory(it->second.pid)) + "/status");
              for (std::string line; std::getline(st, line);)
                if (line.rfind("VmRSS:", 0) == 0) out[i].setRssKib(std::stoull(line.substr(6)));
            }
          }
        });
      });
}

void Agent::reap() {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    Job& job = it->second;
    int status = 0, code = 0;
    if (job.migrating) {
      ++it;
      continue;
    }
    if (job.adopted) {
      if (!adopted_job_ended(job, &code)) {
        ++it;
        continue;
      }
    } else if (::waitpid(job.pid, &status, WNOHANG) != job.pid) {
      ++it;
      continue;
    } else {
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    bool killed = !job.adopted && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    Job ended = std::move(job);
    it = jobs_.erase(it);
    job_ended(std::move(ended), code, killed);
  }
  for (auto it = shells_.begin(); it != shells_.end();)
    it = ::waitpid(*it, nullptr, WNOHANG | __WALL) == *it ? shells_.erase(it) : std::next(it);
}

void Agent::job_ended(Job job, int code, bool killed) {
  if (!job.lost_reason.empty()) return end_job(job.gpid, job.pid, code, job.lost_reason);
  if (!killed || job.import_label.empty()) return end_job(job.gpid, job.pid, code, "");
  why_killed(job.gpid, job.pid, code, job.import_label, 0);
}

// SIGKILL while its memory was still arriving: the pager kills a job whose memory's source is
// lost, having recorded why first. Whoever else killed it (a user, the OOM killer), the pager
// still has the import going, or done.
void Agent::why_killed(uint64_t gpid, pid_t pid, int code, const std::string& label, int attempt) {
  ask_import_states([this, gpid, pid, code, label, attempt](Result<ImportStates> r) {
    if (!r) {
      if (attempt < 5) {
        port_.loop().after(std::chrono::milliseconds(200),
                           [this, gpid, pid, code, label, attempt] { why_killed(gpid, pid, code, label, attempt + 1); });
        return;
      }
      return end_job(gpid, pid, code,
                     "killed while its memory was still arriving (" + label + "), and the pager of " + options_.node +
                         " does not answer to say why: " + r.error().message);
    }
    auto it = r.value().find(label);
    if (it == r.value().end())
      return end_job(gpid, pid, code,
                     "killed while its memory was still arriving (" + label + "); the pager of " + options_.node +
                         " no longer knows that import (it restarted)");
    end_job(gpid, pid, code, it->second.rfind("failed: ", 0) == 0 ? it->second.substr(8) : "");
  });
}

void Agent::end_job(uint64_t gpid, pid_t pid, int code, const std::string& lost_reason) {
  bool lost = !lost_reason.empty();
  spdlog::info("{}: gpid {} (pid {}) {}", port_.name(), gpid, pid,
               lost ? "lost: " + lost_reason : "exited with status " + std::to_string(code));
  report_end(gpid, code, lost, lost_reason);
}

void Agent::ask_import_states(std::function<void(Result<ImportStates>)> done) {
  port_.call<xmm::wire::PagerStat, xmm::wire::PagerStatReply>(
      "pager@" + options_.node, [](auto) {},
      [done = std::move(done)](Result<dipc::Message<xmm::wire::PagerStatReply>> r) {
        if (!r) return done(r.error());
        ImportStates states;
        for (auto i : r.value().get().getImports()) states[i.getLabel()] = i.getState();
        done(std::move(states));
      },
      dipc::CallOptions{std::chrono::milliseconds(1000), std::nullopt});
}

void Agent::watch_imports() {
  bool any = false;
  for (const auto& [gpid, job] : jobs_) any = any || (!job.import_label.empty() && !job.migrating);
  if (!any || watching_imports_) return;
  watching_imports_ = true;
  ask_import_states([this](Result<ImportStates> r) {
    watching_imports_ = false;
    bool pager_answered = r.ok();
    ImportStates states = r ? std::move(r).value() : ImportStates{};
    for (auto& [gpid, job] : jobs_) {
      if (job.import_label.empty() || job.migrating || !job.lost_reason.empty()) continue;
      auto it = states.find(job.import_label);
      if (it != states.end() && it->second != "fetching" && it->second != "opening") {
        if (it->second.rfind("failed: ", 0) == 0) {
          job.lost_reason = it->second.substr(8);  // the pager killed it: the reap reports why
        } else {  // complete, or ended with the process
          job.import_label.clear();
          job.uffd.reset();
        }
        continue;
      }
      if (it != states.end()) {
        job.pager_strikes = 0;
        continue;
      }
      // Unknown to a pager that answers: it restarted. Silent: give it two more turns.
      if (pager_answered || ++job.pager_strikes >= 3) {
        job.lost_reason = "the pager of " + options_.node + " " + (pager_answered ? "restarted" : "is gone") +
                          " while its memory was still arriving (" + job.import_label + ")";
        spdlog::warn("{}: gpid {}: {}; killing pid {}", port_.name(), gpid, job.lost_reason, job.pid);
        ::kill(job.pid, SIGKILL);
      }
    }
  });
}

void Agent::report_end(uint64_t gpid, int status, bool lost, const std::string& reason) {
  port_.call<wire::ProcessEnded, dipc::wire::Empty>(
      "master",
      [&](wire::ProcessEnded::Builder b) {
        b.setGpid(gpid);
        b.setNode(options_.node);
        b.setExitStatus(status);
        b.setLost(lost);
        b.setReason(reason);
      },
      [this, gpid, status, lost, reason](Result<dipc::Message<dipc::wire::Empty>> r) {
        if (r) return;
        if (r.error().code == ErrorCode::kRefused || r.error().code == ErrorCode::kNotFound)
          return spdlog::warn("{}: gpid {}: the master did not take its end: {}", port_.name(), gpid, r.error().message);
        // The master is away: it must still learn how the job ended (`ferry wait` asks it).
        spdlog::warn("{}: gpid {}: the master did not take its end ({}); telling it again in 500 ms", port_.name(), gpid,
                     r.error().message);
        port_.loop().after(std::chrono::milliseconds(500),
                           [this, gpid, status, lost, reason] { report_end(gpid, status, lost, reason); });
      });
}

}  // namespace ferry::pm
