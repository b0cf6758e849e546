// What ferry-master, ferry-agent and ferry-pager share: command-line flags, logging, the event
// loop and the daemon's Port, a pid file, and a clean stop on SIGTERM/SIGINT (unregister from
// the master, close sockets, remove the pid file and socket; exit status 0).
//
//   ferry-<role> --state-dir DIR --host ADDR --key-file FILE [--node NAME] [--master HOST:PORT]
//                [--provider tcp;ofi_rxm] [--heartbeat-ms 500] [--suspect-ms] [--dead-ms]
//                [--dead-limit-ms] [--probe-ms]
//                [--timeout-ms 2000] [--spin-us N] [--log-level info]
//
// The master has no --node and no --master; once it listens it writes "host:port" to
// DIR/master.address for the others to find.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "dipc/port.h"

namespace ferry::runtime {

struct DaemonConfig {
  std::string role;  // "master", "agent", "pager"
  std::string node;
  std::string state_dir;
  std::string host = "127.0.0.1";
  std::string service = "0";
  std::string master;
  std::string key_file;
  std::string provider = "tcp;ofi_rxm";
  int heartbeat_ms = 500;
  int suspect_ms = 0;  // 0: 3 heartbeats
  int dead_ms = 0;     // 0: 6 heartbeats (the earliest a silent node may be declared dead)
  int dead_limit_ms = 0;  // 0: 3 x dead_ms (a silent node is probed then, whatever its phi)
  int probe_ms = 0;    // 0: 4 heartbeats (the probe that confirms a death)
  int timeout_ms = 2000;
  int spin_us = 50;  // the event loop keeps polling this long after any work before it sleeps
  std::string log_level = "info";

  std::string port_name() const { return node.empty() ? role : role + "@" + node; }
};

// Role-specific set-up, run once the Port is open; what it returns lives until the daemon stops.
using DaemonSetup = std::function<ferry::Result<std::shared_ptr<void>>(dipc::Port&, const DaemonConfig&)>;

// Runs before the daemon's port unregisters on a stop (other ports to unregister); calls `done`.
using DaemonStopping = std::function<void(std::function<void()> done)>;

// Parses flags, runs the daemon until it is told to stop, returns the process exit status.
// `max_message`: the largest frame the daemon's port receives (the pager's carry pages).
// `spin_us`: the default of --spin-us (the pager's is longer: a fault's request and the next
// one find both pagers awake; waking a sleeping thread costs 35-50 us in this VM).
int daemon_main(const std::string& role, int argc, char** argv, DaemonSetup setup, size_t max_message = 256 * 1024,
                DaemonStopping stopping = nullptr, int spin_us = 50);

}  // namespace ferry::runtime
