// dipc-rtt: request/reply round trip through DIPC (Ping -> Pong between two ports in two
// processes) against a raw libfabric send/recv echo on the same provider and addresses,
// measured in the same run. Target: DIPC's p50 within 1.3x of raw.
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <iostream>
#include <random>
#include <thread>

#include "dipc/cluster_key.h"
#include "dipc/name_service.h"
#include "dipc/port.h"
#include "perf/bench.h"

namespace ferry::bench {
namespace {

using Clock = std::chrono::steady_clock;
using dipc::FabricEndpoint;
using dipc::FabricOptions;
namespace fs = std::filesystem;

constexpr const char* kServerHost = "127.0.0.2";
constexpr const char* kClientHost = "127.0.0.3";

void report(int fd, const std::string& line) {
  std::string l = line + "\n";
  [[maybe_unused]] ssize_t n = write(fd, l.data(), l.size());
}

// Raw echo: every message starts with the sender's 16-byte address; the reply is the same bytes.
int raw_echo(const std::string&, int fd) {
  FabricOptions o;
  o.host = kServerHost;
  auto ep = FabricEndpoint::open(o);
  if (!ep) return report(fd, "ERROR " + ep.error().message), 1;
  FabricEndpoint& e = *ep.value();
  const size_t alen = e.address().size();
  std::vector<std::vector<std::byte>> replies;
  e.on_receive([&](std::span<const std::byte> b) {
    if (b.size() < alen) return;
    replies.emplace_back(b.begin(), b.end());
  });
  report(fd, e.address_text());
  for (;;) {
    e.progress();
    for (auto& r : replies) {
      std::string addr(reinterpret_cast<const char*>(r.data()), alen);
      auto peer = e.peer(addr);
      if (peer) e.send(peer.value(), std::move(r), Clock::now() + std::chrono::seconds(5), nullptr);
    }
    replies.clear();
  }
}

int dipc_echo(const std::string& key, int fd) {
  auto loop = dipc::EventLoop::create().value();
  dipc::PortOptions o;
  o.name = "master";
  o.fabric.host = kServerHost;
  o.key_file = key;
  auto port = dipc::Port::open(o, *loop);
  if (!port) return report(fd, "ERROR " + port.error().message), 1;
  dipc::NameService names(*port.value(), std::chrono::milliseconds(500));
  report(fd, port.value()->address_text());
  loop->run();
  return 0;
}

RegisterHelper raw_helper("raw-echo", raw_echo);
RegisterHelper dipc_helper("dipc-echo", dipc_echo);

std::vector<double> raw_rtts(const std::string& server, size_t payload, int warmup, int rounds) {
  FabricOptions o;
  o.host = kClientHost;
  auto ep = FabricEndpoint::open(o).value();
  auto peer = ep->peer_by_text(server).value();
  std::vector<std::byte> msg(ep->address().size() + payload, std::byte{0x5a});
  std::memcpy(msg.data(), ep->address().data(), ep->address().size());
  bool got = false;
  ep->on_receive([&](std::span<const std::byte>) { got = true; });
  std::vector<double> out;
  out.reserve(size_t(rounds));
  for (int i = 0; i < warmup + rounds; ++i) {
    got = false;
    auto t0 = Clock::now();
    ep->send(peer, msg, t0 + std::chrono::seconds(5), nullptr);
    while (!got) ep->progress();
    if (i >= warmup)
      out.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return out;
}

std::vector<double> dipc_rtts(const std::string& server, const fs::path& key, size_t payload,
                              int warmup, int rounds, std::chrono::microseconds spin) {
  auto loop = dipc::EventLoop::create(spin).value();
  dipc::PortOptions o;
  o.name = "bench@n1";
  o.node = "n1";
  o.fabric.host = kClientHost;
  o.master = server;
  o.key_file = key;
  auto port = dipc::Port::open(o, *loop).value();
  std::string data(payload, 'z');
  std::vector<double> out;
  out.reserve(size_t(rounds));
  std::promise<void> done;
  int i = 0;
  std::function<void()> next = [&] {
    if (i == warmup + rounds) return done.set_value();
    auto t0 = Clock::now();
    port->call<dipc::wire::Ping, dipc::wire::Pong>(
        "master",
        [&](dipc::wire::Ping::Builder b) {
          b.setPayload(
              capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(data.data()), data.size()));
        },
        [&, t0](Result<dipc::Message<dipc::wire::Pong>> r) {
          if (!r) std::cerr << "dipc-rtt: " << r.error().message << "\n";
          if (i++ >= warmup)
            out.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
          next();
        });
  };
  std::thread t([&] { loop->run(); });
  loop->post(next);
  done.get_future().wait();
  loop->stop();
  t.join();
  return out;
}

void stop(int pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

nlohmann::json run(const std::vector<std::string>& args) {
  int rounds = args.empty() ? 20000 : std::max(100, std::atoi(args[0].c_str()));
  int warmup = std::min(2000, rounds / 5);
  fs::path dir = fs::temp_directory_path() / ("ferry-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);
  fs::path key = dir / "cluster.key";
  (void)dipc::ClusterKey::generate(key);

  nlohmann::json figures, reference, ratio, checks = nlohmann::json::array();
  std::cout << fmt::format("dipc-rtt: {} round trips per row, provider tcp;ofi_rxm, {} -> {}\n",
                           rounds, kClientHost, kServerHost);
  std::cout << fmt::format("{:<34} {:>9} {:>9} {:>9}\n", "", "p50 us", "p99 us", "mean us");
  auto row = [](const std::string& label, const Summary& s) {
    std::cout << fmt::format("{:<34} {:>9.1f} {:>9.1f} {:>9.1f}\n", label, s.p50, s.p99, s.mean);
  };
  for (size_t size : {size_t(32), size_t(4096)}) {
    auto [raw_pid, raw_addr] = spawn_helper("raw-echo", "");
    Summary raw = summarize(raw_rtts(raw_addr, size, warmup, rounds));
    stop(raw_pid);
    auto [dipc_pid, dipc_addr] = spawn_helper("dipc-echo", key.string());
    Summary d =
        summarize(dipc_rtts(dipc_addr, key, size, warmup, rounds, std::chrono::microseconds(50)));
    Summary d_sleep = summarize(
        dipc_rtts(dipc_addr, key, size, warmup / 4, rounds / 4, std::chrono::microseconds(0)));
    stop(dipc_pid);
    std::string sz = std::to_string(size);
    row("raw libfabric send/recv, " + sz + " B", raw);
    row("DIPC Ping/Pong, " + sz + " B", d);
    row("DIPC, client never spins, " + sz + " B", d_sleep);
    double r = d.p50 / raw.p50;
    std::cout << fmt::format("  ratio DIPC/raw p50 at {} B: {:.2f} (target <= 1.3: {})\n", size, r,
                             verdict(r <= 1.3));
    reference["raw_" + sz] = to_json(raw);
    figures["dipc_" + sz] = to_json(d);
    figures["dipc_no_spin_" + sz] = to_json(d_sleep);
    ratio["p50_" + sz] = r;
    checks.push_back(check("DIPC round trip p50, " + sz + " B", d.p50, "us", raw.p50, r,
                           "<= 1.3x raw", r <= 1.3));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return {{"name", "dipc-rtt"},
          {"unit", "us"},
          {"figures", figures},
          {"reference", reference},
          {"ratio", ratio},
          {"target", {{"p50_ratio_max", 1.3}}},
          {"checks", checks},
          {"provider", "tcp;ofi_rxm"},
          {"machine", machine_description()}};
}

Register reg({"dipc-rtt",
              "request/reply through DIPC vs raw libfabric send/recv (32 B, 4 KiB)",
              run,
              {"2000"},
              "Ping/Pong between two DIPC ports in two processes (authenticated frames, the event "
              "loop) against a raw fi_send/fi_recv echo between two processes on the same provider "
              "and addresses, in the same run; 32 B and 4 KiB payloads. Target: DIPC's p50 within "
              "1.3x of raw.",
              "[ROUNDS=20000]"});

}  // namespace
}  // namespace ferry::bench
