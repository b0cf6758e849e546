// ferry: the command line of a Ferry cluster.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include "runtime/cli/commands.h"
#include "runtime/log.h"

int main(int argc, char** argv) {
  CLI::App app{"ferry: move running processes between machines"};
  app.require_subcommand(1);
  std::string cluster, node;
  bool json = false;
  app.add_option("--cluster", cluster, "cluster name (default: $FERRY_CLUSTER or 'default')");
  app.add_option("--node", node, "the node whose agent this CLI talks to (default: $FERRY_NODE or the first)");

  auto* cl = app.add_subcommand("cluster", "a local cluster on this machine");
  cl->require_subcommand(1);
  ferry::runtime::ClusterUpOptions up_opts;
  auto* up = cl->add_subcommand("up", "start a master and an agent and a pager per node");
  up->add_option("--nodes", up_opts.nodes, "number of nodes (n1..nN)")->check(CLI::Range(1, 64));
  up->add_flag("--netns", up_opts.netns, "put each node in its own network namespace");
  up->add_option("--provider", up_opts.provider, "libfabric provider");
  up->add_option("--heartbeat-ms", up_opts.heartbeat_ms, "heartbeat period")->check(CLI::Range(10, 60000));
  up->add_option("--suspect-ms", up_opts.suspect_ms, "suspect a node after this long without heartbeat");
  up->add_option("--dead-ms", up_opts.dead_ms, "declare a node dead after this long without heartbeat");
  up->add_option("--log-level", up_opts.log_level, "daemons' log level");
  auto* down = cl->add_subcommand("down", "stop every daemon and remove the cluster's namespaces and files");

  auto* nodes = app.add_subcommand("nodes", "list nodes with address, state and heartbeat age");
  nodes->add_flag("--json", json, "machine-readable output");

  std::string target;
  int count = 5, size = 0;
  auto* ping = app.add_subcommand("ping", "ping a port (master, agent@n2, pager@n1) from the local agent");
  ping->add_option("target", target, "port name")->required();
  ping->add_option("--count", count, "number of pings")->check(CLI::Range(1, 10000));
  ping->add_option("--size", size, "payload bytes")->check(CLI::Range(0, 65536));
  ping->add_flag("--json", json, "machine-readable output");

  int pid = 0;
  std::string dir;
  bool leave_running = false;
  auto* cp = app.add_subcommand("checkpoint", "save a running process into a directory (it is stopped unless --leave-running)");
  cp->add_option("pid", pid, "process id")->required();
  cp->add_option("--dir", dir, "directory to write")->required();
  cp->add_flag("--leave-running", leave_running, "let the process run on after the checkpoint");
  auto* rs = app.add_subcommand("restore", "bring a checkpointed process back; prints its pid");
  rs->add_option("--dir", dir, "checkpoint directory")->required();

  auto* st = app.add_subcommand("stat", "page-fault traffic of the pagers (every node, or --node's)");
  st->add_flag("--json", json, "machine-readable output, with a time series per import");

  CLI11_PARSE(app, argc, argv);
  ferry::runtime::setup_logging("ferry", "warn");
  if (node.empty())
    if (const char* n = getenv("FERRY_NODE")) node = n;
  ferry::cli::Context ctx{ferry::runtime::ClusterLayout::from_env(cluster), node, json};

  if (up->parsed()) return ferry::cli::cluster_up(ctx, up_opts);
  if (down->parsed()) return ferry::cli::cluster_down(ctx);
  if (nodes->parsed()) return ferry::cli::nodes(ctx);
  if (ping->parsed()) return ferry::cli::ping(ctx, target, count, size);
  if (cp->parsed()) return ferry::cli::checkpoint(pid, dir, leave_running);
  if (rs->parsed()) return ferry::cli::restore(dir);
  if (st->parsed()) return ferry::cli::stat(ctx);
  return 2;
}
