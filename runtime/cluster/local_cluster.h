// A local Ferry cluster on one machine, for users trying Ferry, for the demo and for every
// integration test: a master, and an agent and a pager per node (n1..nN).
//
// Loopback mode: node k listens on 127.0.0.(k+1), the master on 127.0.0.1; ports are chosen
// by the kernel. --netns mode: each node in its own network namespace joined by veth pairs to
// a bridge in a hub namespace (runtime/cluster/netns.h), so a node's network can be cut.
// Either way the CLI reaches the daemons only through their unix sockets.
//
// up() either leaves a cluster whose every node is alive, or fails with an error naming what
// did not start (with the end of its log) and leaves nothing behind. down() stops every
// process it started (SIGTERM, then SIGKILL after a grace period), removes the namespaces and
// the state directory. Several clusters with different names run side by side.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "dipc/status.h"
#include "runtime/cluster_layout.h"

namespace ferry::runtime {

struct ClusterUpOptions {
  int nodes = 3;
  bool netns = false;
  std::string provider = "tcp;ofi_rxm";
  int heartbeat_ms = 500;
  int suspect_ms = 0;  // 0: the master's default (3 heartbeats)
  int dead_ms = 0;     // 0: the master's default (6 heartbeats)
  int probe_ms = 0;    // 0: the master's default (4 heartbeats)
  std::string log_level = "info";
  std::chrono::milliseconds ready_timeout{20000};
};

struct DaemonRecord {
  std::string role;   // master, agent, pager
  std::string node;   // empty for the master
  int pid = 0;
  std::vector<std::string> args;  // its command line after the binary (for a restart)
};

struct ClusterManifest {
  std::string name;
  bool netns = false;
  std::string provider;
  std::string master_address;  // host:port of the master's fabric endpoint
  std::vector<std::string> nodes;
  std::vector<std::string> hosts;       // per node
  std::vector<std::string> namespaces;  // per node, netns mode only
  std::string hub_namespace;
  std::vector<DaemonRecord> daemons;
};

using Progress = std::function<void(const std::string&)>;

Result<ClusterManifest> cluster_up(const ClusterLayout& layout, const ClusterUpOptions& options,
                                   const Progress& progress);
// Returns a one-line summary of what was removed. kNotFound when there is no such cluster.
Result<std::string> cluster_down(const ClusterLayout& layout);
Result<ClusterManifest> read_manifest(const ClusterLayout& layout);
// A node failing at once: its agent and pager get SIGKILL, and so does every process the agent
// had started (its jobs); the shells its pager held die with the pager. Returns a summary.
// `node` "master": the master alone.
Result<std::string> cluster_kill_node(const ClusterLayout& layout, const std::string& node);
// --netns clusters: the node's link down (cut) or up again (heal).
Result<std::string> cluster_set_link(const ClusterLayout& layout, const std::string& node, bool up);
// Starts the node's agent and pager again with the same arguments: the agent is crashed first
// (SIGKILL: its jobs run on and the new agent finds them), the pager stopped (SIGTERM: it kills
// the jobs whose pages had not all arrived); and waits until the master sees the node alive. `node` "master": the master,
// at the same address (the nodes register again by themselves), then every node alive.
Result<std::string> cluster_restart_node(const ClusterLayout& layout, const std::string& node);

}  // namespace ferry::runtime
