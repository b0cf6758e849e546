#include "runtime/cluster/netns.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

namespace ferry::runtime {
namespace {

// Runs `ip args...`; on failure the error holds the command and what ip printed.
Status ip(const std::vector<std::string>& args) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return make_error(ErrorCode::kUnavailable, errno_message("pipe", errno));
  std::vector<std::string> argv_s{"ip"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::execvp("ip", argv.data());
    _exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[512];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) text.append(buf, size_t(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  std::string cmd = "ip";
  for (auto& a : args) cmd += " " + a;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return make_error(ErrorCode::kUnavailable, "'" + cmd + "' failed: " + (text.empty() ? "no output" : text));
}

}  // namespace

std::string NetnsTopology::hub_namespace(const std::string& cluster) { return "fy-" + cluster + "-hub"; }
std::string NetnsTopology::node_namespace(const std::string& cluster, const std::string& node) {
  return "fy-" + cluster + "-" + node;
}

NetnsTopology NetnsTopology::plan(const std::string& cluster, int nodes) {
  NetnsTopology t;
  t.hub = hub_namespace(cluster);
  t.hub_address = "10.77.0.1";
  for (int i = 1; i <= nodes; ++i) {
    t.nodes.push_back(node_namespace(cluster, "n" + std::to_string(i)));
    t.node_addresses.push_back("10.77.0." + std::to_string(i + 1));
  }
  return t;
}

bool netns_exists(const std::string& name) { return std::filesystem::exists("/var/run/netns/" + name); }

Status create_topology(const NetnsTopology& t) {
  auto fail = [&](Status s) {
    destroy_topology(t);
    return s;
  };
  for (const auto& ns : t.nodes)
    if (netns_exists(ns)) return make_error(ErrorCode::kUnavailable, "network namespace " + ns + " already exists");
  if (netns_exists(t.hub)) return make_error(ErrorCode::kUnavailable, "network namespace " + t.hub + " already exists");

  std::vector<std::vector<std::string>> steps = {
      {"netns", "add", t.hub},
      {"-n", t.hub, "link", "set", "lo", "up"},
      {"-n", t.hub, "link", "add", "br0", "type", "bridge"},
      {"-n", t.hub, "addr", "add", t.hub_address + "/24", "dev", "br0"},
      {"-n", t.hub, "link", "set", "br0", "up"},
  };
  for (size_t i = 0; i < t.nodes.size(); ++i) {
    const std::string& ns = t.nodes[i];
    std::string veth = "v-n" + std::to_string(i + 1);
    steps.push_back({"netns", "add", ns});
    steps.push_back({"-n", ns, "link", "set", "lo", "up"});
    steps.push_back({"-n", t.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns});
    steps.push_back({"-n", t.hub, "link", "set", veth, "master", "br0"});
    steps.push_back({"-n", t.hub, "link", "set", veth, "up"});
    steps.push_back({"-n", ns, "addr", "add", t.node_addresses[i] + "/24", "dev", "eth0"});
    steps.push_back({"-n", ns, "link", "set", "eth0", "up"});
  }
  for (const auto& s : steps)
    if (Status st = ip(s); !st) return fail(st);
  return Status::Ok();
}

int destroy_topology(const NetnsTopology& t) {
  int removed = 0;
  for (const auto& ns : t.nodes)
    if (netns_exists(ns) && ip({"netns", "del", ns})) ++removed;
  if (netns_exists(t.hub) && ip({"netns", "del", t.hub})) ++removed;
  return removed;
}

Status set_node_link(const NetnsTopology& t, const std::string& node, bool up) {
  if (node.size() < 2 || node[0] != 'n') return make_error(ErrorCode::kInvalid, "no node named " + node);
  return ip({"-n", t.hub, "link", "set", "v-" + node, up ? "up" : "down"});
}

}  // namespace ferry::runtime
