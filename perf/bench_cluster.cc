// A benchmark's local cluster through the ferry CLI (bench_cluster.h).
#include "perf/bench_cluster.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <random>

#include "perf/bench_process.h"

namespace ferry::bench {

namespace fs = std::filesystem;

namespace {

CliResult run_ferry(const fs::path& root, const std::vector<std::string>& args) {
  CliResult r;
  int o[2], e[2];
  if (pipe2(o, O_CLOEXEC) != 0) return r;
  if (pipe2(e, O_CLOEXEC) != 0) {
    close(o[0]), close(o[1]);
    return r;
  }
  std::vector<std::string> argv_s{(bin_dir() / "ferry").string()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(o[1], 1);
    dup2(e[1], 2);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    setenv("FERRY_STATE_ROOT", root.c_str(), 1);
    unsetenv("FERRY_CLUSTER");
    unsetenv("FERRY_NODE");
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(o[1]);
  close(e[1]);
  // Both pipes drained together: a chatty stderr must not block the CLI.
  pollfd fds[2] = {{o[0], POLLIN, 0}, {e[0], POLLIN, 0}};
  std::string* into[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        into[i]->append(buf, size_t(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid)
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.ms = ms_since(t0);
  return r;
}

std::atomic<int> clusters_made{0};

}  // namespace

Cluster::Cluster(const std::string& tag, int nodes) : nodes_(nodes) {
  std::random_device rd;
  name_ = "fb" + tag + std::to_string(getpid()) + "x" + std::to_string(clusters_made++);
  root_ =
      fs::temp_directory_path() / ("ferry-bench-" + name_ + "-" + std::to_string(rd() % 100000));
  fs::create_directories(root_);
}

Cluster::~Cluster() {
  down();
  std::error_code ec;
  fs::remove_all(root_, ec);
}

std::string Cluster::up() {
  auto r = cli({"cluster", "up", "--nodes", std::to_string(nodes_)});
  up_ = r.status == 0;
  return up_ ? "" : "ferry cluster up: status " + std::to_string(r.status) + ": " + r.text();
}

void Cluster::down() {
  if (!up_ && !fs::exists(dir())) return;
  up_ = false;
  auto r = cli({"cluster", "down"});
  if (r.status != 0) std::cerr << "ferry-bench: ferry cluster down: " << r.text() << "\n";
}

CliResult Cluster::cli(const std::vector<std::string>& args, const std::string& node) const {
  std::vector<std::string> all{"--cluster", name_};
  if (!node.empty()) all.insert(all.end(), {"--node", node});
  all.insert(all.end(), args.begin(), args.end());
  return run_ferry(root_, all);
}

pid_t Cluster::pager_pid(const std::string& node) const {
  return std::atoi(slurp(dir() / node / "pager.pid").c_str());
}
pid_t Cluster::agent_pid(const std::string& node) const {
  return std::atoi(slurp(dir() / node / "agent.pid").c_str());
}

Result<std::unique_ptr<dipc::LocalClient>> Cluster::pager(const std::string& node) const {
  return dipc::LocalClient::connect(dir() / node / "pager.sock");
}

}  // namespace ferry::bench
