#include "runtime/cluster/local_cluster.h"

#include <signal.h>
#include <algorithm>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "dipc/cluster_key.h"
#include "dipc/local_client.h"
#include "pm/pm.capnp.h"
#include "runtime/cluster/netns.h"
#include "runtime/cluster/processes.h"

namespace ferry::runtime {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

json to_json(const ClusterManifest& m) {
  json daemons = json::array();
  for (const auto& d : m.daemons) daemons.push_back({{"role", d.role}, {"node", d.node}, {"pid", d.pid}, {"args", d.args}});
  return {{"name", m.name},           {"netns", m.netns},   {"provider", m.provider},
          {"master", m.master_address}, {"nodes", m.nodes},   {"hosts", m.hosts},
          {"namespaces", m.namespaces}, {"hub", m.hub_namespace}, {"daemons", daemons}};
}

Status write_manifest(const ClusterLayout& layout, const ClusterManifest& m) {
  fs::path tmp = layout.manifest();
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << to_json(m).dump(2) << "\n";
    if (!out) return make_error(ErrorCode::kUnavailable, "cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, layout.manifest(), ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot write " + layout.manifest().string() + ": " + ec.message());
  return Status::Ok();
}

std::string log_tail(const fs::path& log, size_t lines = 8) {
  std::ifstream in(log);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "\n    " + all[i];
  return out.empty() ? " (empty log)" : out;
}

std::string read_first_line(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  return s;
}

// The daemons' common flags for one cluster.
std::vector<std::string> common_args(const ClusterLayout& layout, const ClusterUpOptions& o, const std::string& dir,
                                     const std::string& host) {
  return {"--state-dir", dir, "--host", host, "--key-file", layout.key_file().string(), "--provider", o.provider,
          "--heartbeat-ms", std::to_string(o.heartbeat_ms), "--log-level", o.log_level};
}

// Waits until every node has an agent and a pager (both its ports) registered and alive, as the
// master sees it, and registered by the daemons of the manifest (their pids): after a restart the
// master may still list the killed daemons' ports, alive, until it notices they are gone.
Status wait_until_ready(const ClusterLayout& layout, const ClusterManifest& m, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string missing = "the master did not answer";
  while (Clock::now() < deadline) {
    for (const auto& d : m.daemons)
      if (!is_ferry_daemon(d.pid)) {
        fs::path log = layout.daemon_dir(d.node) / (d.role + ".log");
        return make_error(ErrorCode::kUnavailable,
                          d.role + (d.node.empty() ? "" : "@" + d.node) + " exited during start-up; its log:" + log_tail(log));
      }
    auto client = dipc::LocalClient::connect(layout.socket("master", ""));
    if (client) {
      auto r = client.value()->call<pm::wire::ListNodes, pm::wire::NodeList>([](auto) {}, std::chrono::seconds(2));
      if (r) {
        missing.clear();
        for (const auto& node : m.nodes) {
          bool agent = false, pager = false, bulk = false, alive = false;
          uint32_t agent_pid = 0, pager_pid = 0;
          for (const auto& d : m.daemons)
            if (d.node == node) (d.role == "agent" ? agent_pid : pager_pid) = uint32_t(d.pid);
          for (auto n : r.value().get().getNodes()) {
            if (n.getName() != node) continue;
            alive = n.getState() == pm::wire::NodeState::ALIVE;
            for (auto p : n.getPorts()) {
              agent = agent || (p.getName() == "agent@" + node && p.getPid() == agent_pid);
              pager = pager || (p.getName() == "pager@" + node && p.getPid() == pager_pid);
              bulk = bulk || (p.getName() == "pager-bulk@" + node && p.getPid() == pager_pid);
            }
          }
          if (!agent) missing += " agent@" + node;
          if (!pager) missing += " pager@" + node;
          if (!bulk) missing += " pager-bulk@" + node;
          if (agent && pager && bulk && !alive) missing += " " + node + "(not alive)";
        }
        if (missing.empty()) return Status::Ok();
        missing = "not registered with the master:" + missing;
      } else {
        missing = r.error().message;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return make_error(ErrorCode::kTimeout, "cluster " + m.name + " not ready after " +
                                             std::to_string(timeout.count()) + " ms: " + missing);
}

}  // namespace

Result<ClusterManifest> read_manifest(const ClusterLayout& layout) {
  std::ifstream in(layout.manifest());
  if (!in) return make_error(ErrorCode::kNotFound, "no cluster named " + layout.name() + " (no " + layout.manifest().string() + ")");
  try {
    json j = json::parse(in);
    ClusterManifest m;
    m.name = j.at("name");
    m.netns = j.at("netns");
    m.provider = j.at("provider");
    m.master_address = j.at("master");
    m.nodes = j.at("nodes").get<std::vector<std::string>>();
    m.hosts = j.at("hosts").get<std::vector<std::string>>();
    m.namespaces = j.at("namespaces").get<std::vector<std::string>>();
    m.hub_namespace = j.at("hub");
    for (const auto& d : j.at("daemons"))
      m.daemons.push_back({d.at("role"), d.at("node"), d.at("pid"), d.value("args", std::vector<std::string>{})});
    return m;
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInvalid, layout.manifest().string() + " is damaged: " + e.what());
  }
}

Result<ClusterManifest> cluster_up(const ClusterLayout& layout, const ClusterUpOptions& o, const Progress& progress) {
  if (!ClusterLayout::valid_name(layout.name()))
    return make_error(ErrorCode::kInvalid, "cluster name '" + layout.name() + "' must be 1-12 characters of a-z, 0-9, -");
  if (o.nodes < 1 || o.nodes > 64) return make_error(ErrorCode::kInvalid, "--nodes must be between 1 and 64");
  if (o.netns && geteuid() != 0) return make_error(ErrorCode::kUnauthorized, "--netns needs root (it creates network namespaces)");

  if (auto old = read_manifest(layout); old) {
    for (const auto& d : old.value().daemons)
      if (is_ferry_daemon(d.pid))
        return make_error(ErrorCode::kUnavailable, "cluster " + layout.name() + " is already up; run `ferry --cluster " +
                                                       layout.name() + " cluster down` first");
  }
  if (fs::exists(layout.dir())) {
    progress("removing what an earlier cluster " + layout.name() + " left behind");
    (void)cluster_down(layout);
  }
  std::error_code ec;
  fs::create_directories(layout.dir(), ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot create " + layout.dir().string() + ": " + ec.message());
  if (Status s = dipc::ClusterKey::generate(layout.key_file()); !s) return s.error();

  ClusterManifest m;
  m.name = layout.name();
  m.netns = o.netns;
  m.provider = o.provider;
  for (int i = 1; i <= o.nodes; ++i) m.nodes.push_back("n" + std::to_string(i));
  std::string master_host = "127.0.0.1";
  NetnsTopology topo;
  if (o.netns) {
    topo = NetnsTopology::plan(layout.name(), o.nodes);
    m.namespaces = topo.nodes;
    m.hub_namespace = topo.hub;
    m.hosts = topo.node_addresses;
    master_host = topo.hub_address;
    if (Status s = write_manifest(layout, m); !s) return s.error();
    progress("creating network namespaces " + topo.hub + " and " + std::to_string(o.nodes) + " node namespaces");
    if (Status s = create_topology(topo); !s) {
      (void)cluster_down(layout);
      return s.error();
    }
  } else {
    for (int i = 1; i <= o.nodes; ++i) m.hosts.push_back("127.0.0." + std::to_string(i + 1));
  }

  auto abort = [&](Error e) -> Result<ClusterManifest> {
    (void)write_manifest(layout, m);
    (void)cluster_down(layout);
    return e;
  };
  fs::path bin = own_bin_dir();

  // The master first: the others need its address.
  fs::path master_dir = layout.daemon_dir("");
  fs::create_directories(master_dir, ec);
  auto args = common_args(layout, o, master_dir.string(), master_host);
  if (o.suspect_ms) args.insert(args.end(), {"--suspect-ms", std::to_string(o.suspect_ms)});
  if (o.dead_ms) args.insert(args.end(), {"--dead-ms", std::to_string(o.dead_ms)});
  if (o.probe_ms) args.insert(args.end(), {"--probe-ms", std::to_string(o.probe_ms)});
  auto master = spawn_daemon(bin / "ferry-master", args, master_dir / "master.log", o.netns ? topo.hub : "");
  if (!master) return abort(master.error());
  m.daemons.push_back({"master", "", master.value(), args});
  (void)write_manifest(layout, m);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (m.master_address.empty()) {
    m.master_address = read_first_line(master_dir / "master.address");
    if (!m.master_address.empty()) break;
    if (!is_ferry_daemon(master.value()))
      return abort(make_error(ErrorCode::kUnavailable, "ferry-master exited during start-up; its log:" +
                                                           log_tail(master_dir / "master.log")));
    if (Clock::now() > deadline)
      return abort(make_error(ErrorCode::kTimeout, "ferry-master did not start listening within 10 s; its log:" +
                                                       log_tail(master_dir / "master.log")));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  progress("master listening at " + m.master_address);
  // A restarted master listens where the nodes look for it.
  m.daemons.back().args.insert(m.daemons.back().args.end(),
                               {"--service", m.master_address.substr(m.master_address.rfind(':') + 1)});

  for (size_t i = 0; i < m.nodes.size(); ++i) {
    const std::string& node = m.nodes[i];
    fs::path dir = layout.daemon_dir(node);
    fs::create_directories(dir, ec);
    for (const char* role : {"agent", "pager"}) {
      auto a = common_args(layout, o, dir.string(), m.hosts[i]);
      a.insert(a.end(), {"--node", node, "--master", m.master_address});
      auto pid = spawn_daemon(bin / (std::string("ferry-") + role), a, dir / (std::string(role) + ".log"),
                              o.netns ? topo.nodes[i] : "");
      if (!pid) return abort(pid.error());
      m.daemons.push_back({role, node, pid.value(), a});
    }
    (void)write_manifest(layout, m);
  }
  progress("started " + std::to_string(m.daemons.size()) + " daemons; waiting for every node to be alive");
  if (Status s = wait_until_ready(layout, m, o.ready_timeout); !s) return abort(s.error());
  if (Status s = write_manifest(layout, m); !s) return abort(s.error());
  return m;
}

Result<std::string> cluster_down(const ClusterLayout& layout) {
  auto m = read_manifest(layout);
  if (!m && !fs::exists(layout.dir()))
    return make_error(ErrorCode::kNotFound, "no cluster named " + layout.name() + " (nothing at " + layout.dir().string() + ")");
  int stopped = 0, killed = 0, namespaces = 0;
  if (m) {
    // Nodes first, so that they can still unregister; then the master.
    std::vector<int> nodes, master;
    for (const auto& d : m.value().daemons) (d.role == "master" ? master : nodes).push_back(d.pid);
    for (int pid : nodes) stopped += is_ferry_daemon(pid);
    for (int pid : master) stopped += is_ferry_daemon(pid);
    killed += stop_daemons(nodes, std::chrono::seconds(3));
    killed += stop_daemons(master, std::chrono::seconds(3));
    if (m.value().netns) {
      NetnsTopology t = NetnsTopology::plan(layout.name(), int(m.value().nodes.size()));
      namespaces = destroy_topology(t);
    }
  }
  std::error_code ec;
  fs::remove_all(layout.dir(), ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot remove " + layout.dir().string() + ": " + ec.message());
  std::ostringstream out;
  out << "cluster " << layout.name() << " down: stopped " << stopped << " daemons";
  if (killed) out << " (" << killed << " needed SIGKILL)";
  if (namespaces) out << ", removed " << namespaces << " network namespaces";
  return out.str();
}

namespace {

// Direct children of `parent`, from /proc.
std::vector<int> children_of(int parent) {
  std::vector<int> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(e.path() / "stat");
    std::string line;
    std::getline(in, line);
    auto paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(line.substr(paren + 2));
    char state;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(std::stoi(name));
  }
  return out;
}

}  // namespace

Result<std::string> cluster_kill_node(const ClusterLayout& layout, const std::string& node) {
  auto m = read_manifest(layout);
  if (!m) return m.error();
  std::vector<int> daemons;
  const std::string key = node == "master" ? "" : node;
  for (const auto& d : m.value().daemons)
    if (d.node == key && is_ferry_daemon(d.pid)) daemons.push_back(d.pid);
  if (!key.empty() && std::find(m.value().nodes.begin(), m.value().nodes.end(), node) == m.value().nodes.end())
    return make_error(ErrorCode::kNotFound, "cluster " + layout.name() + " has no node " + node);
  if (daemons.empty()) return make_error(ErrorCode::kNotFound, "node " + node + " has no daemon running");
  std::vector<int> jobs;
  for (int pid : daemons)
    for (int child : children_of(pid)) jobs.push_back(child);
  for (int pid : daemons) ::kill(pid, SIGKILL);
  for (int pid : jobs) ::kill(pid, SIGKILL);
  std::ostringstream out;
  out << "node " << node << " killed: " << daemons.size() << " daemons and " << jobs.size() << " of their processes";
  return out.str();
}

Result<std::string> cluster_set_link(const ClusterLayout& layout, const std::string& node, bool up) {
  auto m = read_manifest(layout);
  if (!m) return m.error();
  if (!m.value().netns)
    return make_error(ErrorCode::kInvalid, "cluster " + layout.name() + " runs on loopback: only a --netns cluster's node can be cut");
  if (std::find(m.value().nodes.begin(), m.value().nodes.end(), node) == m.value().nodes.end())
    return make_error(ErrorCode::kNotFound, "cluster " + layout.name() + " has no node " + node);
  NetnsTopology t = NetnsTopology::plan(layout.name(), int(m.value().nodes.size()));
  if (Status s = set_node_link(t, node, up); !s) return s.error();
  return "node " + node + (up ? " reconnected" : " cut off");
}

Result<std::string> cluster_restart_node(const ClusterLayout& layout, const std::string& node) {
  auto m = read_manifest(layout);
  if (!m) return m.error();
  auto& nodes = m.value().nodes;
  const std::string key = node == "master" ? "" : node;
  auto at = std::find(nodes.begin(), nodes.end(), node);
  if (!key.empty() && at == nodes.end())
    return make_error(ErrorCode::kNotFound, "cluster " + layout.name() + " has no node " + node);
  std::string netns;
  if (m.value().netns) netns = key.empty() ? m.value().hub_namespace : m.value().namespaces[size_t(at - nodes.begin())];
  // Agents and the master crash (SIGKILL): jobs keep running and the successor finds them; a
  // pager stops cleanly, killing the jobs whose memory it was still fetching (their pages
  // would otherwise read as zeros once nobody holds their userfaultfd).
  std::vector<int> pagers;
  for (const auto& d : m.value().daemons) {
    if (d.node != key || !is_ferry_daemon(d.pid)) continue;
    if (d.role == "pager") {
      pagers.push_back(d.pid);
      continue;
    }
    ::kill(d.pid, SIGKILL);
    for (int i = 0; i < 300 && ::kill(d.pid, 0) == 0 && is_ferry_daemon(d.pid); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop_daemons(pagers, std::chrono::seconds(3));
  fs::path bin = own_bin_dir();
  for (auto& d : m.value().daemons) {
    if (d.node != key) continue;
    if (d.args.empty()) return make_error(ErrorCode::kInvalid, "the manifest does not say how " + d.role + " " + node + " was started");
    fs::path dir = layout.daemon_dir(key);
    auto pid = spawn_daemon(bin / ("ferry-" + d.role), d.args, dir / (d.role + ".log"), netns);
    if (!pid) return pid.error();
    d.pid = pid.value();
  }
  if (Status s = write_manifest(layout, m.value()); !s) return s.error();
  if (Status s = wait_until_ready(layout, m.value(), std::chrono::seconds(20)); !s) return s.error();
  return "node " + node + " restarted";
}

}  // namespace ferry::runtime
