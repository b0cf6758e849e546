#include "pm/job_namespace.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "pm/spawn.h"

namespace ferry::pm {
namespace {

// How long the init may take to start and mount /proc: a busy node can be slow.
constexpr int kReadyTimeoutMs = 15000;

struct InitChild {
  const char* path;
  int control;
  int devnull;
};

// In the new namespaces, sharing our memory until the exec: system calls only.
int start_init(void* p) {
  auto* c = static_cast<InitChild*>(p);
  int control = ::fcntl(c->control, F_DUPFD, 10);  // the dup is not close-on-exec
  for (int fd = 0; fd < 3; ++fd) ::dup2(c->devnull, fd);
  ::dup2(control, 3);
  ::close_range(4, ~0u, 0);
  ::setsid();
  char* argv[] = {const_cast<char*>("ferry-job-init"), nullptr};
  char* envp[] = {nullptr};
  ::execve(c->path, argv, envp);
  return 127;
}

}  // namespace

Result<std::unique_ptr<JobNamespace>> JobNamespace::create(const std::filesystem::path& init) {
  std::filesystem::path path = init;
  if (path.empty()) path = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "ferry-job-init";
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message("job namespace: socketpair", errno));
  UniqueFd ours(sv[0]), theirs(sv[1]);
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  std::string path_text = path.string();
  InitChild child{path_text.c_str(), theirs.get(), devnull.get()};
  pid_t pid = pm::spawn({CLONE_NEWPID | CLONE_NEWNS | CLONE_VM | CLONE_VFORK, 0}, start_init, &child);
  if (pid < 0) return make_error(ErrorCode::kUnavailable, errno_message("job namespace: clone3 (new pid and mount namespaces)", -pid));
  theirs.reset();
  std::unique_ptr<JobNamespace> ns(new JobNamespace());
  ns->init_pid_ = pid;  // from here on, the destructor stops it on failure

  pollfd pfd{ours.get(), POLLIN, 0};
  char reply[1 + sizeof(int)] = {};
  ssize_t n = 0;
  if (::poll(&pfd, 1, kReadyTimeoutMs) == 1) n = ::read(ours.get(), reply, sizeof reply);
  if (n <= 0) {
    int status = 0;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ns->init_pid_ = -1;
    if (n == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 127)
      return make_error(ErrorCode::kUnavailable, "job namespace: cannot run " + path_text);
    return make_error(ErrorCode::kUnavailable, "job namespace: " + path_text + " did not start within " +
                                                   std::to_string(kReadyTimeoutMs / 1000) + " s");
  }
  if (reply[0] != 'R') {
    int err = 0;
    std::memcpy(&err, reply + 1, sizeof err);
    return make_error(ErrorCode::kUnavailable, errno_message("job namespace: mounting its /proc", err));
  }
  std::string base = "/proc/" + std::to_string(pid) + "/ns/";
  ns->pid_ns_.reset(::open((base + "pid").c_str(), O_RDONLY | O_CLOEXEC));
  ns->mount_ns_.reset(::open((base + "mnt").c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns->pid_ns_ || !ns->mount_ns_) return make_error(ErrorCode::kUnavailable, errno_message("job namespace: open " + base, errno));
  ns->control_ = std::move(ours);
  return ns;
}

JobNamespace::~JobNamespace() {
  if (init_pid_ > 0 && !watched_) {
    ::kill(init_pid_, SIGKILL);
    ::waitpid(init_pid_, nullptr, 0);
  }
}

Result<pid_t> JobNamespace::spawn(pid_t pid, uint64_t flags, int (*child)(void*), void* arg) {
  UniqueFd ours(::open("/proc/thread-self/ns/pid_for_children", O_RDONLY | O_CLOEXEC));
  if (!ours) return make_error(ErrorCode::kUnavailable, errno_message("open /proc/thread-self/ns/pid_for_children", errno));
  if (::setns(pid_ns_.get(), CLONE_NEWPID) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message("enter the job's pid namespace", errno));
  pid_t got = pm::spawn({flags, pid}, child, arg);
  int err = -got;
  if (::setns(ours.get(), CLONE_NEWPID) != 0) std::abort();  // our next children would be born in the job
  if (got < 0) {
    if (err == EEXIST) return make_error(ErrorCode::kRefused, "pid " + std::to_string(pid) + " is taken in the job's namespace");
    return make_error(ErrorCode::kUnavailable, errno_message("clone3 in the job's namespace", err));
  }
  return got;
}

Status JobNamespace::watch(pid_t pid_in_namespace) {
  int32_t p = pid_in_namespace;
  if (::send(control_.get(), &p, sizeof p, MSG_NOSIGNAL) != ssize_t(sizeof p))
    return make_error(ErrorCode::kUnavailable, errno_message("tell the job's init its main process", errno));
  watched_ = true;
  control_.reset();
  return Status::Ok();
}

Result<std::vector<pid_t>> namespace_pids(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return make_error(ErrorCode::kNotFound, "no process " + std::to_string(pid));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("NSpid:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    std::vector<pid_t> pids;
    for (pid_t p; fields >> p;) pids.push_back(p);
    if (!pids.empty()) return pids;
  }
  return make_error(ErrorCode::kUnavailable, "/proc/" + std::to_string(pid) + "/status has no NSpid");
}

}  // namespace ferry::pm
