#include "runtime/cluster/processes.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <thread>

namespace ferry::runtime {

namespace fs = std::filesystem;

fs::path own_bin_dir() { return fs::read_symlink("/proc/self/exe").parent_path(); }

Result<int> spawn_daemon(const fs::path& binary, const std::vector<std::string>& args, const fs::path& log,
                         const std::string& netns) {
  int ns_fd = -1;
  if (!netns.empty()) {
    ns_fd = ::open(("/var/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0) return make_error(ErrorCode::kNotFound, "network namespace " + netns + " does not exist");
  }
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    if (ns_fd >= 0) ::close(ns_fd);
    return make_error(ErrorCode::kUnavailable, errno_message("open " + log.string(), errno));
  }
  std::vector<std::string> argv_s{binary.string()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  // The child reports a failure before exec through a close-on-exec pipe: EOF means exec worked.
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return make_error(ErrorCode::kUnavailable, errno_message("pipe", errno));
  pid_t pid = ::fork();
  if (pid < 0) return make_error(ErrorCode::kUnavailable, errno_message("fork", errno));
  if (pid == 0) {
    ::close(report[0]);
    auto fail = [&](int err) {
      [[maybe_unused]] ssize_t n = ::write(report[1], &err, sizeof err);
      _exit(127);
    };
    ::setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (ns_fd >= 0 && ::setns(ns_fd, CLONE_NEWNET) != 0) fail(errno);
    int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(argv[0], argv.data());
    fail(errno);
  }
  ::close(report[1]);
  ::close(log_fd);
  if (ns_fd >= 0) ::close(ns_fd);
  int err = 0;
  ssize_t n = ::read(report[0], &err, sizeof err);
  ::close(report[0]);
  if (n == sizeof err) {
    ::waitpid(pid, nullptr, 0);
    return make_error(ErrorCode::kUnavailable, errno_message("start " + binary.string(), err));
  }
  return int(pid);
}

bool is_ferry_daemon(int pid) {
  if (pid <= 0) return false;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  if (name.rfind("ferry-", 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close_paren = line.rfind(')');
  return close_paren != std::string::npos && line.size() > close_paren + 2 && line[close_paren + 2] != 'Z';
}

int stop_daemons(const std::vector<int>& pids, std::chrono::milliseconds grace) {
  std::vector<int> ours;
  for (int pid : pids)
    if (is_ferry_daemon(pid)) ours.push_back(pid);
  for (int pid : ours) ::kill(pid, SIGTERM);
  auto gone = [](int pid) {
    ::waitpid(pid, nullptr, WNOHANG);  // reap it if it is our child
    return !is_ferry_daemon(pid);
  };
  auto deadline = std::chrono::steady_clock::now() + grace;
  int killed = 0;
  for (;;) {
    bool all = true;
    for (int pid : ours) all = all && gone(pid);
    if (all) return killed;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int pid : ours)
    if (!gone(pid)) {
      ::kill(pid, SIGKILL);
      ++killed;
    }
  for (int i = 0; i < 250; ++i) {
    bool all = true;
    for (int pid : ours) all = all && gone(pid);
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return killed;
}

}  // namespace ferry::runtime
