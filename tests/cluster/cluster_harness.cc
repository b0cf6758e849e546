#include "cluster_harness.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

namespace ferry::testing {

namespace fs = std::filesystem;

namespace {

// The reaper: a shell in its own session that outlives this process. It learns of every test
// cluster (a line "up ROOT NAME" on its stdin, "gone ROOT NAME" once cleaned up or kept on
// purpose), and when its stdin ends (this process exited, however: a timeout's SIGKILL, SIGTERM,
// a crash) it brings down the clusters still listed and removes their state roots. So a test
// run that is killed leaves no daemon, namespace or state directory behind.
constexpr const char* kReaperScript = R"(
clusters=
while read -r verb root name; do
  case "$verb" in
    up) clusters="$clusters$root $name
" ;;
    gone) clusters=$(printf '%s' "$clusters" | grep -vxF "$root $name")
          [ -n "$clusters" ] && clusters="$clusters
" ;;
  esac
done
printf '%s' "$clusters" | while read -r root name; do
  [ -n "$root" ] || continue
  FERRY_STATE_ROOT="$root" "$1" --cluster "$name" cluster down >/dev/null 2>&1
  rm -rf "$root"
done
)";

int start_reaper() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;  // our end must not leak into the daemons we start
  std::string ferry_bin = std::string(FERRY_BIN_DIR) + "/ferry";  // before fork: no malloc after
  pid_t pid = fork();
  if (pid == 0) {
    setsid();  // a kill of our process group spares it
    dup2(p[0], 0);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    close_range(3, ~0u, 0);
    execl("/bin/sh", "sh", "-c", kReaperScript, "ferry-test-reaper", ferry_bin.c_str(), nullptr);
    _exit(127);
  }
  close(p[0]);
  return pid > 0 ? p[1] : -1;
}

void tell_reaper(const std::string& verb, const fs::path& root, const std::string& name) {
  static int fd = start_reaper();
  if (fd < 0) return;
  std::string line = verb + " " + root.string() + " " + name + "\n";
  [[maybe_unused]] ssize_t n = write(fd, line.data(), line.size());
}

}  // namespace

CommandResult ferry(const fs::path& state_root, const std::vector<std::string>& args) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return {};
  std::vector<std::string> argv_s{std::string(FERRY_BIN_DIR) + "/ferry"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    setenv("FERRY_STATE_ROOT", state_root.c_str(), 1);
    unsetenv("FERRY_CLUSTER");
    unsetenv("FERRY_NODE");
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  CommandResult r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    poll(fds, 2, -1);
    for (auto& f : fds) {
      if (f.fd < 0 || !(f.revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(f.fd, buf, sizeof buf);
      if (n <= 0) {
        close(f.fd);
        f.fd = -1;
        --open_fds;
      } else {
        (f.fd == out[0] ? r.out : r.err).append(buf, size_t(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

TestCluster::TestCluster(std::string name) : name_(std::move(name)) {
  std::random_device rd;
  root_ = fs::temp_directory_path() / ("ferry-test-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 100000));
  fs::create_directories(root_);
  tell_reaper("up", root_, name_);
}

TestCluster::~TestCluster() {
  if (!keep_) {
    if (is_up_ || fs::exists(dir())) down();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  tell_reaper("gone", root_, name_);
}

CommandResult TestCluster::up(const std::vector<std::string>& extra) {
  std::vector<std::string> args{"--cluster", name_, "cluster", "up"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = ferry(root_, args);
  is_up_ = r.status == 0;
  return r;
}

CommandResult TestCluster::down() {
  is_up_ = false;
  return ferry(root_, {"--cluster", name_, "cluster", "down"});
}

CommandResult TestCluster::run(std::vector<std::string> args) const {
  args.insert(args.begin(), {"--cluster", name_});
  return ferry(root_, args);
}

nlohmann::json TestCluster::nodes_json() const {
  auto r = run({"nodes", "--json"});
  if (r.status != 0) return nlohmann::json::array();
  return nlohmann::json::parse(r.out, nullptr, false);
}

std::string TestCluster::wait_for_state(const std::string& node, const std::string& state, int timeout_ms) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string seen = "(not listed)";
  do {
    for (const auto& n : nodes_json())
      if (n.is_object() && n.value("name", "") == node) seen = n.value("state", "");
    if (seen == state) return seen;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < deadline);
  return seen;
}

nlohmann::json TestCluster::manifest() const {
  std::ifstream in(dir() / "cluster.json");
  if (!in) return nlohmann::json::object();
  return nlohmann::json::parse(in, nullptr, false);
}

std::vector<int> TestCluster::daemon_pids() const {
  std::vector<int> pids;
  auto m = manifest();
  if (m.contains("daemons"))
    for (const auto& d : m["daemons"]) pids.push_back(d.value("pid", 0));
  return pids;
}

bool process_alive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto p = line.rfind(')');
  return p != std::string::npos && line.size() > p + 2 && line[p + 2] != 'Z';
}

std::vector<std::string> namespaces_with_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/var/run/netns", ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().filename());
  return out;
}

}  // namespace ferry::testing
