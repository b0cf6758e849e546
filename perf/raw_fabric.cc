// The raw libfabric page server and client (raw_fabric.h), as ferry-bench helper processes.
#include "perf/raw_fabric.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <sstream>
#include <vector>

#include "dipc/fabric.h"
#include "perf/bench.h"
#include "perf/bench_process.h"
#include "xmm/pager.h"

namespace ferry::bench {
namespace {

using namespace std::chrono_literals;
using dipc::FabricEndpoint;
using dipc::FabricOptions;
constexpr double kMiB = 1024.0 * 1024.0;

FabricOptions raw_options(const char* host) {
  FabricOptions o;
  o.provider = kRawProvider;
  o.host = host;
  o.max_message = xmm::kPagerMaxMessage;  // the pager's bulk port
  o.recv_buffers = 16;
  return o;
}

void report(int fd, const std::string& line) {
  std::string l = line + "\n";
  [[maybe_unused]] ssize_t n = write(fd, l.data(), l.size());
}

int raw_page_server(const std::string&, int fd) {
  auto ep = FabricEndpoint::open(raw_options(kServerHost));
  if (!ep) return report(fd, "ERROR " + ep.error().message), 1;
  FabricEndpoint& e = *ep.value();
  const size_t alen = e.address().size();
  std::vector<std::byte> pages(kBulkMessage);
  for (size_t i = 0; i < pages.size(); ++i) pages[i] = std::byte(i * 131 + 7);
  std::vector<std::pair<std::string, uint32_t>> todo;
  e.on_receive([&](std::span<const std::byte> b) {
    if (b.size() < alen + 4) return;
    uint32_t n = 0;
    std::memcpy(&n, b.data() + alen, 4);
    todo.emplace_back(std::string(reinterpret_cast<const char*>(b.data()), alen),
                      std::min<uint32_t>(n, kBulkMessage));
  });
  report(fd, e.address_text());
  for (;;) {
    e.progress();
    for (auto& [addr, n] : todo) {
      auto peer = e.peer(addr);
      if (!peer) continue;
      std::vector<std::byte> reply(pages.begin(), pages.begin() + n);
      e.send(peer.value(), std::move(reply), Clock::now() + 5s, nullptr);
    }
    todo.clear();
  }
}

nlohmann::json percentiles(std::vector<double> v) {
  nlohmann::json out = nlohmann::json::array();
  std::sort(v.begin(), v.end());
  for (int p = 0; p <= 100 && !v.empty(); ++p)
    out.push_back(v[std::min(v.size() - 1, size_t(double(p) / 100.0 * double(v.size())))]);
  return out;
}

// arg: "SERVER rtt ROUNDS SIZE" or "SERVER bulk BYTES"; reports one line of JSON.
int raw_page_client(const std::string& arg, int fd) {
  std::istringstream in(arg);
  std::string server, mode;
  uint64_t a = 0, b = 0;
  in >> server >> mode >> a >> b;
  auto ep = FabricEndpoint::open(raw_options(kClientHost));
  if (!ep) return report(fd, "ERROR " + ep.error().message), 1;
  FabricEndpoint& e = *ep.value();
  auto peer = e.peer_by_text(server);
  if (!peer) return report(fd, "ERROR " + peer.error().message), 1;
  const size_t alen = e.address().size();
  std::vector<std::byte> req(alen + 4);
  std::memcpy(req.data(), e.address().data(), alen);
  uint64_t replies = 0, received = 0;
  e.on_receive([&](std::span<const std::byte> m) {
    ++replies;
    received += m.size();
  });
  auto ask = [&](uint32_t n) {
    std::memcpy(req.data() + alen, &n, 4);
    e.send(peer.value(), req, Clock::now() + 5s, nullptr);
  };
  auto deadline = Clock::now() + 120s;
  if (mode == "rtt") {
    const int rounds = int(a), warmup = std::max(100, rounds / 10);
    const uint32_t size = uint32_t(b);
    std::vector<double> out;
    out.reserve(size_t(rounds));
    for (int i = 0; i < warmup + rounds; ++i) {
      uint64_t before = replies;
      auto t0 = Clock::now();
      ask(size);
      while (replies == before) {
        e.progress();
        if (Clock::now() > deadline) return report(fd, "ERROR timed out"), 1;
      }
      if (i >= warmup)
        out.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    nlohmann::json j = to_json(summarize(out));
    j["percentiles"] = percentiles(out);
    report(fd, j.dump());
    return 0;
  }
  if (mode == "rtt-inflight") {
    // `a` requests of `b` bytes, kept `c` in flight at all times (as `c` threads faulting at
    // once keep a request each): the latency of each, from its request to its reply (the
    // server answers in order).
    uint64_t c = 1;
    in >> c;
    const int rounds = int(a), warmup = std::max(100, rounds / 10);
    const uint32_t size = uint32_t(b);
    const uint64_t inflight = std::clamp<uint64_t>(c, 1, 256);
    std::vector<double> out;
    out.reserve(size_t(rounds));
    std::deque<Clock::time_point> sent;
    const uint64_t total = uint64_t(warmup + rounds);
    uint64_t asked = 0, answered = 0;  // (no reply came before: replies counts from 0 here)
    while (answered < total) {
      while (asked < total && sent.size() < inflight) {
        sent.push_back(Clock::now());
        ask(size);
        ++asked;
      }
      e.progress();
      while (replies > answered && !sent.empty()) {
        if (answered >= uint64_t(warmup))
          out.push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent.front()).count());
        sent.pop_front();
        ++answered;
      }
      if (Clock::now() > deadline) return report(fd, "ERROR timed out"), 1;
    }
    nlohmann::json j = to_json(summarize(out));
    j["percentiles"] = percentiles(out);
    j["in_flight"] = inflight;
    report(fd, j.dump());
    return 0;
  }
  // bulk: `a` bytes in kBulkMessage replies, kBulkInFlight in flight.
  auto transfer = [&](uint64_t bytes) -> bool {
    uint64_t messages = (bytes + kBulkMessage - 1) / kBulkMessage, asked = 0, start = replies;
    while (replies - start < messages) {
      while (asked < messages && asked - (replies - start) < uint64_t(kBulkInFlight)) {
        uint64_t left = bytes - asked * kBulkMessage;
        ask(uint32_t(std::min<uint64_t>(left, kBulkMessage)));
        ++asked;
      }
      e.progress();
      if (Clock::now() > deadline) return false;
    }
    return true;
  };
  if (!transfer(32ull * kBulkMessage)) return report(fd, "ERROR warm-up timed out"), 1;
  received = 0;
  auto t0 = Clock::now();
  if (!transfer(a)) return report(fd, "ERROR timed out"), 1;
  double ms = ms_since(t0);
  report(fd,
         nlohmann::json{
             {"bytes", received}, {"ms", ms}, {"mib_s", double(received) / kMiB / (ms / 1000.0)}}
             .dump());
  return 0;
}

RegisterHelper server_helper("raw-page-server", raw_page_server);
RegisterHelper client_helper("raw-page-client", raw_page_client);

// Runs the raw client against a fresh server; the client's JSON line, or an "error" member.
nlohmann::json raw_reference(const std::string& what) {
  Helper server("raw-page-server", "");
  if (server.line.empty() || server.line.rfind("ERROR", 0) == 0)
    return {{"error", "raw server: " + server.line}};
  Helper client("raw-page-client", server.line + " " + what);
  if (client.line.empty() || client.line.rfind("ERROR", 0) == 0)
    return {{"error", "raw client: " + client.line}};
  auto j = nlohmann::json::parse(client.line, nullptr, false);
  if (j.is_discarded()) return {{"error", "raw client said " + client.line}};
  client.reap();
  return j;
}

}  // namespace

nlohmann::json raw_request_reply(int rounds, uint32_t size) {
  return raw_reference("rtt " + std::to_string(rounds) + " " + std::to_string(size));
}

nlohmann::json raw_request_reply_in_flight(int rounds, uint32_t size, int in_flight) {
  return raw_reference("rtt-inflight " + std::to_string(rounds) + " " + std::to_string(size) + " " + std::to_string(in_flight));
}

nlohmann::json raw_bulk(uint64_t bytes) { return raw_reference("bulk " + std::to_string(bytes)); }

nlohmann::json raw_bulk_best(uint64_t bytes, int runs) {
  nlohmann::json best, all = nlohmann::json::array();
  for (int i = 0; i < runs; ++i) {
    nlohmann::json r = raw_bulk(bytes);
    if (r.contains("error")) return r;
    all.push_back(r["mib_s"]);
    if (best.is_null() || r["mib_s"].get<double>() > best["mib_s"].get<double>()) best = r;
  }
  best["runs_mib_s"] = all;
  best["best_of"] = runs;
  return best;
}

}  // namespace ferry::bench
