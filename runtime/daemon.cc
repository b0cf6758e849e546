#include "runtime/daemon.h"

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "runtime/log.h"

namespace ferry::runtime {
namespace {

namespace fs = std::filesystem;

bool write_file_atomically(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << "\n";
    if (!out) return false;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  return !ec;
}

}  // namespace

int daemon_main(const std::string& role, int argc, char** argv, DaemonSetup setup, size_t max_message,
                DaemonStopping before_stop, int spin_us) {
  DaemonConfig cfg;
  cfg.role = role;
  cfg.spin_us = spin_us;
  CLI::App app{"ferry-" + role + ": the " + role + " daemon of a Ferry node"};
  app.add_option("--state-dir", cfg.state_dir, "directory for the socket, pid file and address")->required();
  app.add_option("--host", cfg.host, "fabric address to listen on");
  app.add_option("--service", cfg.service, "fabric port to listen on (0: any)");
  app.add_option("--key-file", cfg.key_file, "the cluster key")->required();
  app.add_option("--provider", cfg.provider, "libfabric provider");
  app.add_option("--heartbeat-ms", cfg.heartbeat_ms, "heartbeat period")->check(CLI::Range(10, 60000));
  app.add_option("--timeout-ms", cfg.timeout_ms, "request timeout")->check(CLI::Range(10, 600000));
  app.add_option("--log-level", cfg.log_level, "debug, info, warn, error");
  app.add_option("--spin-us", cfg.spin_us, "keep polling this long after any work before sleeping")->check(CLI::Range(0, 100000));
  if (role == "master") {
    app.add_option("--suspect-ms", cfg.suspect_ms, "a node is suspect after this long without a heartbeat");
    app.add_option("--dead-ms", cfg.dead_ms,
                   "a silent node may be declared dead (after a probe) from this long without a heartbeat on");
    app.add_option("--dead-limit-ms", cfg.dead_limit_ms,
                   "a silent node is probed after this long whatever its heartbeat history says");
    app.add_option("--probe-ms", cfg.probe_ms, "how long a suspected node's ports have to answer the probe");
  } else {
    app.add_option("--node", cfg.node, "this node's name (n1, n2, ...)")->required();
    app.add_option("--master", cfg.master, "the master's fabric address, host:port")->required();
  }
  CLI11_PARSE(app, argc, argv);
  if (cfg.suspect_ms == 0) cfg.suspect_ms = 3 * cfg.heartbeat_ms;
  if (cfg.dead_ms == 0) cfg.dead_ms = 6 * cfg.heartbeat_ms;
  if (cfg.dead_limit_ms < cfg.dead_ms) cfg.dead_limit_ms = 3 * cfg.dead_ms;
  if (cfg.probe_ms == 0) cfg.probe_ms = 4 * cfg.heartbeat_ms;

  std::string name = cfg.port_name();
  if (!setup_logging(name, cfg.log_level)) spdlog::warn("unknown log level '{}'; using info", cfg.log_level);

  // Signals arrive through a signalfd watched by the loop, so stopping is an ordinary event.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

  fs::path dir = cfg.state_dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::path pid_file = dir / (role + ".pid");
  fs::path address_file = dir / "master.address";

  auto loop = dipc::EventLoop::create(std::chrono::microseconds(cfg.spin_us));
  if (!loop) {
    spdlog::error("{} cannot start: {}", name, loop.error().message);
    return 1;
  }
  dipc::PortOptions opts;
  opts.name = name;
  opts.node = cfg.node;
  opts.fabric.provider = cfg.provider;
  opts.fabric.host = cfg.host;
  opts.fabric.service = cfg.service;
  opts.fabric.max_message = max_message;
  opts.master = cfg.master;
  opts.key_file = cfg.key_file;
  opts.control_socket = dir / (role + ".sock");
  opts.request_timeout = std::chrono::milliseconds(cfg.timeout_ms);
  auto port = dipc::Port::open(opts, *loop.value());
  if (!port) {
    spdlog::error("{} cannot start: {}", name, port.error().message);
    return 1;
  }
  auto services = setup(*port.value(), cfg);
  if (!services) {
    spdlog::error("{} cannot start: {}", name, services.error().message);
    return 1;
  }
  write_file_atomically(pid_file, std::to_string(getpid()));
  if (role == "master" && !write_file_atomically(address_file, port.value()->address_text())) {
    spdlog::error("{} cannot write {}", name, address_file.string());
    return 1;
  }
  spdlog::info("{} started (pid {}, state {})", name, getpid(), dir.string());

  auto& ev = *loop.value();
  bool stopping = false;
  (void)ev.watch(sig_fd, [&](uint32_t) {
    signalfd_siginfo si;
    while (::read(sig_fd, &si, sizeof si) == sizeof si) {
      if (stopping) continue;
      stopping = true;
      spdlog::info("{} stopping on {}", name, strsignal(int(si.ssi_signo)));
      // Unregister, bounded: a dead master must not keep us from stopping.
      ev.after(std::chrono::milliseconds(1000), [&] { ev.stop(); });
      auto leave = [&] { port.value()->unregister([&] { ev.stop(); }); };
      if (before_stop)
        before_stop(leave);
      else
        leave();
    }
  });
  ev.run();
  ev.unwatch(sig_fd);
  ::close(sig_fd);
  services.value().reset();
  port.value().reset();
  fs::remove(pid_file, ec);
  if (role == "master") fs::remove(address_file, ec);
  spdlog::info("{} stopped", name);
  return 0;
}

}  // namespace ferry::runtime
