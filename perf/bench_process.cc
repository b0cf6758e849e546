// Processes of this machine for the benchmarks (bench_process.h).
#include "perf/bench_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "perf/bench.h"

namespace ferry::bench {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
double mono_ms(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(t.time_since_epoch()).count();
}
double mono_ms() { return mono_ms(Clock::now()); }

fs::path bin_dir() { return fs::read_symlink("/proc/self/exe").parent_path(); }
std::string test_program(const std::string& name) {
  return (bin_dir() / ".." / "tests" / "programs" / name).lexically_normal().string();
}
std::string perf_program(const std::string& name) {
  return (bin_dir() / ".." / "perf" / "programs" / name).lexically_normal().string();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

long rss_kib(pid_t pid) {
  if (pid <= 0) return 0;
  std::string s = slurp("/proc/" + std::to_string(pid) + "/status");
  auto at = s.find("VmRSS:");
  return at == std::string::npos ? 0 : std::atol(s.c_str() + at + 6);
}

namespace {

// The fields of /proc/PID/stat after the command name: state is [0], ppid [1], utime [11].
std::vector<std::string> stat_fields(pid_t pid) {
  std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto paren = s.rfind(')');
  std::vector<std::string> out;
  if (paren == std::string::npos) return out;
  std::istringstream in(s.substr(paren + 2));
  for (std::string f; out.size() < 16 && in >> f;) out.push_back(f);
  return out;
}

}  // namespace

double cpu_ms(pid_t pid) {
  auto f = stat_fields(pid);
  if (f.size() < 13) return 0;
  double ticks = std::atof(f[11].c_str()) + std::atof(f[12].c_str());  // utime, stime
  return ticks * 1000.0 / double(sysconf(_SC_CLK_TCK));
}

char process_state(pid_t pid) {
  auto f = stat_fields(pid);
  return f.empty() ? 0 : f[0][0];
}

pid_t parent_pid(pid_t pid) {
  auto f = stat_fields(pid);
  return f.size() < 2 ? 0 : pid_t(std::atoi(f[1].c_str()));
}

std::vector<pid_t> children_of(const std::vector<pid_t>& parents) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    pid_t pid = pid_t(std::atoi(e->d_name));
    if (pid <= 0) continue;
    pid_t pp = parent_pid(pid);
    for (pid_t p : parents)
      if (p > 0 && pp == p) out.push_back(pid);
  }
  closedir(d);
  return out;
}

long available_mib() {
  std::string s = slurp("/proc/meminfo");
  auto at = s.find("MemAvailable:");
  return at == std::string::npos ? 0 : std::atol(s.c_str() + at + 13) / 1024;
}

// ---------------------------------------------------------------------------------------------

Child::Child(const std::vector<std::string>& argv) {
  int i[2], o[2];
  if (pipe2(i, O_CLOEXEC) != 0) return;
  if (pipe2(o, O_CLOEXEC) != 0) {
    close(i[0]), close(i[1]);
    return;
  }
  pid = fork();
  if (pid == 0) {
    dup2(i[0], 0);
    dup2(o[1], 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(i[0]);
  close(o[1]);
  in_ = i[1];
  out_ = o[0];
}

Child::~Child() {
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  if (in_ >= 0) close(in_);
  if (out_ >= 0) close(out_);
}

std::string Child::line(std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  for (;;) {
    if (auto nl = buffered_.find('\n'); nl != std::string::npos) {
      std::string l = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return l;
    }
    check_interrupted();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return "";
    pollfd p{out_, POLLIN, 0};
    if (poll(&p, 1, int(std::min<long>(left.count(), 200))) <= 0) continue;
    char buf[4096];
    ssize_t n = read(out_, buf, sizeof buf);
    if (n <= 0) return "";
    buffered_.append(buf, size_t(n));
  }
}

bool Child::say(const std::string& s) {
  return write(in_, s.data(), s.size()) == ssize_t(s.size());
}

int Child::wait(std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    if (pid <= 0) return 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (Clock::now() >= until) return -1;
    std::this_thread::sleep_for(5ms);
  }
}

Helper::Helper(const std::string& name, const std::string& arg) {
  std::tie(pid, line) = spawn_helper(name, arg);
}

Helper::~Helper() {
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

void Helper::reap() {
  if (pid > 0) waitpid(pid, nullptr, 0);
  pid = -1;
}

}  // namespace ferry::bench
