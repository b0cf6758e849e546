// ferry: the command line of a Ferry cluster. `cluster up/down` starts and stops a local
// cluster; `nodes`, `ping` and `stat` look at its nodes, ports and pagers; `run`, `ps`, `kill`,
// `wait` and `migrate` start jobs (processes with a cluster-wide gpid), list them, signal them,
// wait for them and move them between nodes; `checkpoint`/`restore` work on a local pid.
// Every request goes to the local node's agent (--node, $FERRY_NODE, or the cluster's first).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "runtime/cli/commands.h"
#include "runtime/log.h"

namespace {

// What CLI11 cannot parse, rewritten before it sees it:
//   ferry kill -9 7          -> ferry kill --signal 9 7   (also -KILL, -SIGKILL)
//   ferry run [opts] ls -l   -> ferry run [opts] -- ls -l  (the command's options are its own)
void rewrite_args(std::vector<std::string>& args) {
  static const std::regex signal("^-([0-9]+|[A-Za-z][A-Za-z0-9+]*)$");
  size_t i = 1;
  for (; i < args.size(); ++i) {
    if (args[i] == "--cluster" || args[i] == "--node") ++i;  // skip the global options' values
    else if (args[i].rfind("-", 0) != 0) break;            // the subcommand
  }
  if (i + 1 >= args.size()) return;
  if (args[i] == "kill" && std::regex_match(args[i + 1], signal)) {
    std::string value = args[i + 1].substr(1);
    args[i + 1] = "--signal";
    args.insert(args.begin() + long(i) + 2, value);
  } else if (args[i] == "run") {
    for (size_t j = i + 1; j < args.size(); ++j) {
      if (args[j] == "--") return;
      if (args[j] == "--node") ++j;
      else if (args[j].rfind("-", 0) != 0) {
        args.insert(args.begin() + long(j), "--");
        return;
      }
    }
  }
}

}  // namespace

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
  up->add_option("--dead-ms", up_opts.dead_ms,
                 "probe a silent node, and declare it dead if the probe fails, from this long without heartbeat on");
  up->add_option("--probe-ms", up_opts.probe_ms, "how long a suspected node has to answer the probe");
  up->add_option("--log-level", up_opts.log_level, "daemons' log level");
  auto* down = cl->add_subcommand("down", "stop every daemon and remove the cluster's namespaces and files");
  std::string kill_node;
  auto* cl_kill = cl->add_subcommand("kill", "a node fails: SIGKILL its agent, its pager and their processes ('master': the master)");
  cl_kill->add_option("node", kill_node, "node name (n2) or 'master'")->required();
  auto* cl_cut = cl->add_subcommand("cut", "--netns clusters: take a node's network link down");
  cl_cut->add_option("node", kill_node, "node name")->required();
  auto* cl_heal = cl->add_subcommand("heal", "--netns clusters: bring a cut node's link up again");
  cl_heal->add_option("node", kill_node, "node name")->required();
  auto* cl_restart = cl->add_subcommand("restart", "start a node's agent and pager (or the master) again, killed or not");
  cl_restart->add_option("node", kill_node, "node name or 'master'")->required();

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

  std::optional<uint64_t> stat_gpid;
  auto* st = app.add_subcommand("stat", "page-fault traffic of the pagers (every node, or --node's; with GPID, "
                                        "that job's migrations on every node)");
  st->add_option("gpid", stat_gpid, "only the imports and exports of this job's migrations");
  st->add_flag("--json", json, "machine-readable output, with a time series per import");

  std::vector<std::string> command;
  std::string run_node;
  bool detach = false;
  auto* run = app.add_subcommand("run", "start a job (ferry run [--node N] [-d] [--] CMD ARGS...); streams its output and "
                                        "exits with its status");
  run->add_option("--node", run_node, "the node to run it on (default: the local agent's)");
  run->add_flag("-d,--detach", detach, "print the job's gpid and return at once");
  run->add_option("command", command, "the command and its arguments, run in this directory with this environment")->required();

  auto* ps = app.add_subcommand("ps", "list the cluster's jobs: gpid, user, node, state, RSS in MiB, command, migrations");
  ps->add_flag("--json", json, "machine-readable output");

  uint64_t gpid = 0;
  std::string signal = "TERM";
  auto* kill = app.add_subcommand("kill", "send a signal to a job: ferry kill [-SIG] GPID (-9, -KILL, -SIGKILL; "
                                          "default TERM)");
  kill->add_option("-s,--signal", signal, "signal number or name (with or without SIG)");
  kill->add_option("gpid", gpid, "the job's gpid")->required();

  auto* wait = app.add_subcommand("wait", "wait for a job to end; prints and exits with its exit status (1 if lost)");
  wait->add_option("gpid", gpid, "the job's gpid")->required();

  std::string to;
  bool wait_pages = false;
  auto* mg = app.add_subcommand("migrate", "move a running job to another node");
  mg->add_option("gpid", gpid, "the job's gpid")->required();
  mg->add_option("--to", to, "destination node")->required();
  mg->add_flag("--wait", wait_pages, "then follow its memory until the last page arrived");
  bool eager = false;
  int precopy_rounds = 0;
  auto* eager_flag = mg->add_flag("--eager", eager, "stop-and-copy: all of its memory moves before it resumes");
  auto* precopy_flag = mg->add_flag("--precopy{4}", precopy_rounds,
                                    "copy its memory while it runs (at most ROUNDS rounds, default 4), then move it; "
                                    "only what it wrote since follows lazily");
  precopy_flag->excludes(eager_flag);
  mg->add_flag("--json", json, "machine-readable output: one JSON object");

  std::string fault_node, fault_point, fault_action;
  int fault_ms = 0, fault_count = 1;
  auto* fault = app.add_subcommand("fault", "fault injection on a running daemon (root)");
  fault->require_subcommand(1);
  auto* f_set = fault->add_subcommand("set", "arm a fault: ferry fault set NODE POINT ACTION [--ms N] [--count N]");
  f_set->add_option("node", fault_node, "node name, or 'master'")->required();
  f_set->add_option("point", fault_point, "freeze, offer, install, commit, resume, forward, page-reply, prefetch "
                                          "(ferry fault list NODE)")->required();
  f_set->add_option("action", fault_action, "crash, drop, delay or duplicate")
      ->required()
      ->check(CLI::IsMember({"crash", "drop", "delay", "duplicate"}));
  f_set->add_option("--ms", fault_ms, "delay in milliseconds")->check(CLI::Range(1, 600000));
  f_set->add_option("--count", fault_count, "how many times it fires (0: every time)")->check(CLI::Range(0, 1000000));
  auto* f_clear = fault->add_subcommand("clear", "disarm a node's faults (every one, or POINT's)");
  f_clear->add_option("node", fault_node, "node name, or 'master'")->required();
  f_clear->add_option("point", fault_point, "only this point");
  auto* f_list = fault->add_subcommand("list", "a node's fault points and what is armed");
  f_list->add_option("node", fault_node, "node name, or 'master'")->required();

  std::vector<std::string> args(argv, argv + argc);
  rewrite_args(args);
  std::vector<char*> args_c;
  for (auto& a : args) args_c.push_back(a.data());
  CLI11_PARSE(app, int(args_c.size()), args_c.data());
  ferry::runtime::setup_logging("ferry", "warn");
  if (node.empty())
    if (const char* n = getenv("FERRY_NODE")) node = n;
  ferry::cli::Context ctx{ferry::runtime::ClusterLayout::from_env(cluster), node, json};

  if (up->parsed()) return ferry::cli::cluster_up(ctx, up_opts);
  if (down->parsed()) return ferry::cli::cluster_down(ctx);
  if (cl_kill->parsed()) return ferry::cli::cluster_kill(ctx, kill_node);
  if (cl_cut->parsed()) return ferry::cli::cluster_node_action(ctx, "cut", kill_node);
  if (cl_heal->parsed()) return ferry::cli::cluster_node_action(ctx, "heal", kill_node);
  if (cl_restart->parsed()) return ferry::cli::cluster_node_action(ctx, "restart", kill_node);
  if (nodes->parsed()) return ferry::cli::nodes(ctx);
  if (ping->parsed()) return ferry::cli::ping(ctx, target, count, size);
  if (cp->parsed()) return ferry::cli::checkpoint(pid, dir, leave_running);
  if (rs->parsed()) return ferry::cli::restore(dir);
  if (st->parsed()) return ferry::cli::stat(ctx, stat_gpid);
  if (run->parsed()) return ferry::cli::run(ctx, command, run_node, detach);
  if (ps->parsed()) return ferry::cli::ps(ctx);
  if (kill->parsed()) return ferry::cli::kill_job(ctx, gpid, signal);
  if (wait->parsed()) return ferry::cli::wait_job(ctx, gpid);
  if (mg->parsed()) {
    if (precopy_flag->count() > 0 && (precopy_rounds < 1 || precopy_rounds > 64)) {
      std::cerr << "ferry: migrate: --precopy=ROUNDS takes 1 to 64 rounds\n";
      return 2;
    }
    auto mode = eager ? ferry::cli::MigrateMode::kEager
                : precopy_flag->count() > 0 ? ferry::cli::MigrateMode::kPrecopy
                                            : ferry::cli::MigrateMode::kLazy;
    return ferry::cli::migrate(ctx, gpid, to, wait_pages, mode, uint32_t(std::max(precopy_rounds, 1)));
  }
  if (f_set->parsed()) {
    if (fault_action == "delay" && fault_ms == 0) {
      std::cerr << "ferry: fault set: a delay needs --ms\n";
      return 2;
    }
    return ferry::cli::fault_set(ctx, fault_node, fault_point, fault_action, fault_ms, fault_count);
  }
  if (f_clear->parsed()) return ferry::cli::fault_clear(ctx, fault_node, fault_point);
  if (f_list->parsed()) return ferry::cli::fault_list(ctx, fault_node);
  return 2;
}
