// The pager (XMM) against raw libfabric, on a real 2-node local cluster (n1 on 127.0.0.2 exports,
// n2 on 127.0.0.3 imports) started with the ferry CLI in a private state root:
//
//   fault-latency        4 KiB fault service time (ImportStat latency p50/p99) with prefetch off,
//                        random faults by one thread over 256 MiB (the fault-around window stays
//                        at one page), against a raw fi_send/fi_recv request with a 4 KiB reply
//                        between two processes on the same addresses. Target: p50 <= 1.5x raw.
//   prefetch-throughput  the prefetcher alone: a 1 GiB region imported with prefetch on while the
//                        process stays idle (no faults), bytes on the wire / time to the last
//                        page, against raw 1 MiB replies with 4 in flight (the prefetcher's shape)
//                        carrying the same bytes. Target: >= 0.8x raw.
//   pager-rss            a 4 GiB region (3.5 GiB with data) moved by the prefetcher: the peak of
//                        the summed RSS of the source shell, the destination process and both
//                        pagers, sampled every 20 ms, against the source's RSS before the export.
//                        Target: <= 1.1x.
//
// Arguments: fault-latency [MiB=256] [raw rounds=10000]; prefetch-throughput [MiB=1024];
// pager-rss [MiB=4096]. Every process started is stopped, and the cluster is taken down.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "dipc/fabric.h"
#include "dipc/local_client.h"
#include "perf/bench.h"
#include "pm/capture.h"
#include "xmm/pager.h"
#include "xmm/xmm.capnp.h"

namespace ferry::bench {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using dipc::FabricEndpoint;
using dipc::FabricOptions;
namespace fs = std::filesystem;
namespace wire = xmm::wire;

constexpr uint64_t kBase = 0x600000000000ull;  // tests/programs/pattern.h
constexpr uint64_t kPage = 4096;
constexpr double kMiB = 1024.0 * 1024.0;
constexpr const char* kServerHost = "127.0.0.2";  // n1: the exporting side
constexpr const char* kClientHost = "127.0.0.3";  // n2: the importing side
constexpr uint32_t kBulkMessage = 1 << 20;        // the prefetcher's request size
constexpr int kBulkInFlight = 4;                   // and how many it keeps in flight

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

fs::path bin_dir() { return fs::read_symlink("/proc/self/exe").parent_path(); }
std::string program(const std::string& name) {
  return (bin_dir() / ".." / "tests" / "programs" / name).lexically_normal().string();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// VmRSS in KiB; 0 for a process that is gone (or a zombie).
long rss_kib(pid_t pid) {
  if (pid <= 0) return 0;
  std::string s = slurp("/proc/" + std::to_string(pid) + "/status");
  auto at = s.find("VmRSS:");
  return at == std::string::npos ? 0 : std::atol(s.c_str() + at + 6);
}

// CPU time (user + system, all threads) of a process so far, in ms.
double cpu_ms(pid_t pid) {
  std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto paren = s.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream in(s.substr(paren + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && in >> field; ++i)
    if (i >= 14) ticks += std::atof(field.c_str());  // utime, stime
  return ticks * 1000.0 / double(sysconf(_SC_CLK_TCK));
}

// ---------------------------------------------------------------------------------------------
// Processes

// A program with its stdin and stdout on pipes to us; killed on destruction if still running.
struct Child {
  pid_t pid = -1;
  int in = -1, out = -1;
  std::string buffered;

  explicit Child(const std::vector<std::string>& argv) {
    int i[2], o[2];
    if (pipe2(i, O_CLOEXEC) != 0) return;
    if (pipe2(o, O_CLOEXEC) != 0) {
      close(i[0]), close(i[1]);
      return;
    }
    pid = fork();
    if (pid == 0) {
      dup2(i[0], 0);
      dup2(o[1], 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(i[0]);
    close(o[1]);
    in = i[1];
    out = o[0];
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
  }
  // The next line of its output, or "" after `timeout` or at its end.
  std::string line(std::chrono::milliseconds timeout = 30s) {
    auto until = Clock::now() + timeout;
    for (;;) {
      if (auto nl = buffered.find('\n'); nl != std::string::npos) {
        std::string l = buffered.substr(0, nl);
        buffered.erase(0, nl + 1);
        return l;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0) return "";
      pollfd p{out, POLLIN, 0};
      if (poll(&p, 1, int(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = read(out, buf, sizeof buf);
      if (n <= 0) return "";
      buffered.append(buf, size_t(n));
    }
  }
  bool say(const std::string& s) { return write(in, s.data(), s.size()) == ssize_t(s.size()); }
  // Exit status (128 + signal when killed), or -1 if it still runs after `timeout`.
  int wait(std::chrono::milliseconds timeout) {
    auto until = Clock::now() + timeout;
    for (;;) {
      int status = 0;
      if (pid <= 0) return 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (Clock::now() >= until) return -1;
      std::this_thread::sleep_for(5ms);
    }
  }
};

// A helper process (spawn_helper), killed on destruction.
struct Helper {
  pid_t pid = -1;
  std::string line;
  Helper(const std::string& name, const std::string& arg) { std::tie(pid, line) = spawn_helper(name, arg); }
  Helper(const Helper&) = delete;
  Helper& operator=(const Helper&) = delete;
  ~Helper() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// A local 2-node cluster through the ferry CLI, in a private state root.

struct CliResult {
  int status = -1;
  std::string out;  // stdout and stderr
};

CliResult ferry_cli(const fs::path& root, const std::vector<std::string>& args) {
  CliResult r;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return r;
  std::vector<std::string> argv_s{(bin_dir() / "ferry").string()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    setenv("FERRY_STATE_ROOT", root.c_str(), 1);
    unsetenv("FERRY_CLUSTER");
    unsetenv("FERRY_NODE");
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(p[1]);
  char buf[4096];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;) r.out.append(buf, size_t(n));
  close(p[0]);
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid)
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

class Cluster {
 public:
  Cluster() {
    std::random_device rd;
    name_ = "pb" + std::to_string(getpid());
    root_ = fs::temp_directory_path() / ("ferry-bench-pager-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 100000));
    fs::create_directories(root_);
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  ~Cluster() {
    down();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  // "" or what went wrong.
  std::string up() {
    auto r = ferry_cli(root_, {"--cluster", name_, "cluster", "up", "--nodes", "2"});
    up_ = r.status == 0;
    return up_ ? "" : "ferry cluster up: status " + std::to_string(r.status) + ": " + r.out;
  }
  void down() {
    if (!up_ && !fs::exists(dir())) return;
    up_ = false;
    auto r = ferry_cli(root_, {"--cluster", name_, "cluster", "down"});
    if (r.status != 0) std::cerr << "pager bench: ferry cluster down: " << r.out << "\n";
  }
  fs::path dir() const { return root_ / name_; }
  pid_t pager_pid(const std::string& node) const { return std::atoi(slurp(dir() / node / "pager.pid").c_str()); }
  Result<std::unique_ptr<dipc::LocalClient>> pager(const std::string& node) const {
    return dipc::LocalClient::connect(dir() / node / "pager.sock");
  }

 private:
  std::string name_;
  fs::path root_;
  bool up_ = false;
};

// ---------------------------------------------------------------------------------------------
// Export, import, stat: the pagers' control requests (tests/xmm/pager_test.cc does the same).

struct Exported {
  uint64_t id = 0;
  std::string token, pager;
  uint64_t present = 0, total = 0;
  double ms = 0;  // freeze + hand over + ExportMemory
};

// Freezes `pid`, hands it over and exports [start, end) from n1's pager.
Result<Exported> export_from_n1(const Cluster& cluster, pid_t pid, uint64_t start, uint64_t end, const std::string& label) {
  Exported e;
  auto t0 = Clock::now();
  {
    auto frozen = pm::FrozenProcess::freeze(pid);
    if (!frozen) return frozen.error();
    if (Status s = frozen.value()->hand_over(); !s) return s.error();
  }
  auto c = cluster.pager("n1");
  if (!c) return c.error();
  auto r = c.value()->call<wire::ExportMemory, wire::ExportReply>(
      [&](wire::ExportMemory::Builder b) {
        b.setPid(uint32_t(pid));
        auto rs = b.initRanges(1);
        rs[0].setStart(start);
        rs[0].setEnd(end);
        b.setLabel(label);
      },
      60s);
  if (!r) return r.error();
  auto cap = r.value().get().getCapability();
  e.id = cap.getObjectId();
  e.token.assign(reinterpret_cast<const char*>(cap.getToken().begin()), cap.getToken().size());
  e.pager = cap.getPager();
  e.present = r.value().get().getPresentPages();
  e.total = r.value().get().getTotalPages();
  e.ms = ms_since(t0);
  return e;
}

Status import_into_n2(const Cluster& cluster, const Exported& e, pid_t pid, int fd, uint64_t start, uint64_t end,
                      bool prefetch, const std::string& label) {
  auto c = cluster.pager("n2");
  if (!c) return c.error();
  auto r = c.value()->call<wire::ImportMemory, wire::ImportReply>(
      [&](wire::ImportMemory::Builder b) {
        auto cap = b.initCapability();
        cap.setObjectId(e.id);
        cap.setToken(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(e.token.data()), e.token.size()));
        cap.setPager(e.pager);
        b.setHolderPid(uint32_t(pid));
        b.setUffdFd(fd);
        b.setPid(uint32_t(pid));
        auto rs = b.initRanges(1);
        rs[0].setStart(start);
        rs[0].setEnd(end);
        b.setPrefetch(prefetch);
        b.setLabel(label);
      },
      30s);
  if (!r) return r.error();
  return Status::Ok();
}

struct ImportView {
  bool found = false;
  std::string state;
  uint64_t faults = 0, on_demand = 0, prefetched = 0, zero = 0, bytes = 0, duplicates = 0, present = 0, arrived = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
  uint64_t count = 0;
  double ms_to_last_page = 0, elapsed_ms = 0;
  std::vector<uint64_t> window_bytes;  // per 100 ms
};

ImportView import_stat(const Cluster& cluster, const std::string& label) {
  ImportView v;
  auto c = cluster.pager("n2");
  if (!c) return v;
  auto r = c.value()->call<wire::PagerStat, wire::PagerStatReply>([](wire::PagerStat::Builder) {});
  if (!r) return v;
  for (auto s : r.value().get().getImports()) {
    if (std::string(s.getLabel()) != label) continue;
    v.found = true;
    v.state = s.getState();
    v.faults = s.getFaults();
    v.on_demand = s.getOnDemandPages();
    v.prefetched = s.getPrefetchedPages();
    v.zero = s.getZeroPages();
    v.bytes = s.getBytesOnWire();
    v.duplicates = s.getDuplicatePages();
    v.present = s.getPresentPages();
    v.arrived = s.getArrivedPages();
    auto l = s.getLatency();
    v.p50 = l.getP50Us(), v.p90 = l.getP90Us(), v.p99 = l.getP99Us(), v.max = l.getMaxUs(), v.count = l.getCount();
    v.ms_to_last_page = s.getMsToLastPage();
    v.elapsed_ms = s.getElapsedMs();
    v.window_bytes.clear();
    for (auto w : s.getSeries()) v.window_bytes.push_back(w.getBytes());
  }
  return v;
}

bool ended(const std::string& state) {
  return state == "complete" || state.rfind("ended", 0) == 0 || state.rfind("failed", 0) == 0;
}

// Polls n2's view until the import ended (complete, ended, failed) or `timeout` passed.
ImportView wait_ended(const Cluster& cluster, const std::string& label, std::chrono::milliseconds timeout,
                      std::chrono::milliseconds every = 50ms) {
  auto until = Clock::now() + timeout;
  ImportView v;
  for (;;) {
    v = import_stat(cluster, label);
    if (ended(v.state) || Clock::now() >= until) return v;
    std::this_thread::sleep_for(every);
  }
}

// Median throughput (MiB/s) over the full 100 ms windows that moved bytes (first and last
// dropped: the ramp and the tail).
double steady_mib_s(const std::vector<uint64_t>& windows) {
  std::vector<double> v;
  for (size_t i = 1; i + 1 < windows.size(); ++i)
    if (windows[i] > 0) v.push_back(double(windows[i]) / kMiB / 0.1);
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

nlohmann::json error_json(const std::string& name, const std::string& what) {
  std::cout << name << ": error: " << what << "\n";
  return {{"name", name}, {"error", what}, {"machine", machine_description()}};
}

// ---------------------------------------------------------------------------------------------
// The raw libfabric reference: the pager's exchange with nothing else. A server on n1's address
// answers each request (the client's address, then the reply size as a u32) with that many
// bytes copied from a buffer, the way the exporter copies pages out of a shell; the client on
// n2's address asks, one at a time (rtt) or a few at a time (bulk), like the importer.

FabricOptions raw_options(const char* host) {
  FabricOptions o;
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
    todo.emplace_back(std::string(reinterpret_cast<const char*>(b.data()), alen), std::min<uint32_t>(n, kBulkMessage));
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
  auto deadline = Clock::now() + 60s;
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
      if (i >= warmup) out.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    report(fd, to_json(summarize(out)).dump());
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
  if (!transfer(32ull * kBulkMessage)) return report(fd, "ERROR warm-up timed out"), 1;  // connection, buffers
  received = 0;
  auto t0 = Clock::now();
  if (!transfer(a)) return report(fd, "ERROR timed out"), 1;
  double ms = ms_since(t0);
  report(fd, nlohmann::json{{"bytes", received}, {"ms", ms}, {"mib_s", double(received) / kMiB / (ms / 1000.0)}}.dump());
  return 0;
}

RegisterHelper server_helper("raw-page-server", raw_page_server);
RegisterHelper client_helper("raw-page-client", raw_page_client);

// Runs the raw client against a fresh server; the client's JSON line, or an "error" member.
nlohmann::json raw_reference(const std::string& what) {
  Helper server("raw-page-server", "");
  if (server.line.empty() || server.line.rfind("ERROR", 0) == 0) return {{"error", "raw server: " + server.line}};
  Helper client("raw-page-client", server.line + " " + what);
  if (client.line.empty() || client.line.rfind("ERROR", 0) == 0) return {{"error", "raw client: " + client.line}};
  auto j = nlohmann::json::parse(client.line, nullptr, false);
  if (j.is_discarded()) return {{"error", "raw client said " + client.line}};
  int status = 0;
  waitpid(client.pid, &status, 0);
  client.pid = -1;
  return j;
}

// ---------------------------------------------------------------------------------------------
// One region moved from a pattern_source on n1 into a pattern_faulter on n2.

struct Move {
  std::unique_ptr<Cluster> cluster = std::make_unique<Cluster>();
  std::unique_ptr<Child> source, faulter;
  Exported exported;
  uint64_t mib = 0, end = 0;
  std::string label;
  long source_rss_kib = 0;  // before the export

  // Up to the import: cluster up, source ready, faulter waiting. "" or what went wrong.
  std::string prepare(uint64_t mib_, const std::string& faulter_threads, const std::string& mode) {
    mib = mib_;
    end = kBase + mib * 256 * kPage;
    label = "bench " + mode + " " + std::to_string(mib) + " MiB";
    for (const char* p : {"pattern_source", "pattern_faulter"})
      if (!fs::exists(program(p))) return "missing " + program(p) + " (build the tests/programs targets)";
    if (std::string err = cluster->up(); !err.empty()) return err;
    source = std::make_unique<Child>(std::vector<std::string>{program("pattern_source"), std::to_string(mib)});
    if (std::string l = source->line(120s); l != "ready") return "pattern_source said '" + l + "'";
    source_rss_kib = rss_kib(source->pid);
    faulter = std::make_unique<Child>(
        std::vector<std::string>{program("pattern_faulter"), std::to_string(mib), faulter_threads, mode});
    return "";
  }
  std::string export_and_import(bool prefetch, Clock::time_point* import_started = nullptr) {
    std::string hello = faulter->line();
    if (hello.rfind("uffd ", 0) != 0) return "pattern_faulter said '" + hello + "'";
    auto e = export_from_n1(*cluster, source->pid, kBase, end, label);
    if (!e) return "export: " + e.error().message;
    exported = e.value();
    if (import_started) *import_started = Clock::now();
    Status s = import_into_n2(*cluster, exported, faulter->pid, std::atoi(hello.c_str() + 5), kBase, end, prefetch, label);
    if (!s) return "import: " + s.error().message;
    return "";
  }
  // Lets the faulter check its pages; "" if every byte matched.
  std::string verify(std::chrono::milliseconds timeout = 120s) {
    if (!faulter->say("go\n")) return "cannot talk to pattern_faulter";
    std::string result = faulter->line(timeout);
    int status = faulter->wait(30s);
    if (result.find("mismatches 0") == std::string::npos || status != 0)
      return "pattern_faulter: '" + result + "', status " + std::to_string(status);
    return "";
  }
  // The shell is killed by its pager once everything was sent or the import released it.
  bool source_gone(std::chrono::milliseconds timeout) { return source->wait(timeout) >= 0; }
  // Cluster down first (its pagers kill their shells), then anything left.
  ~Move() {
    cluster.reset();
    faulter.reset();
    source.reset();
  }
};

// ---------------------------------------------------------------------------------------------
// fault-latency

nlohmann::json fault_latency(const std::vector<std::string>& args) {
  const std::string name = "fault-latency";
  const uint64_t mib = args.size() > 0 ? std::max(16, std::atoi(args[0].c_str())) : 256;
  const int rounds = args.size() > 1 ? std::max(100, std::atoi(args[1].c_str())) : 10000;
  std::cout << fmt::format("fault-latency: random faults by 1 thread over {} MiB, prefetch off; raw: {} round trips, "
                           "provider tcp;ofi_rxm, {} -> {}\n", mib, rounds, kClientHost, kServerHost);
  ImportView v;
  double wall_ms = 0;
  bool source_gone = false;
  {
    Move m;
    if (auto err = m.prepare(mib, "1", "random"); !err.empty()) return error_json(name, err);
    if (auto err = m.export_and_import(false); !err.empty()) return error_json(name, err);
    auto t0 = Clock::now();
    if (auto err = m.verify(); !err.empty()) return error_json(name, err);
    wall_ms = ms_since(t0);
    v = wait_ended(*m.cluster, m.label, 10s);
    source_gone = m.source_gone(5s);
  }
  if (!v.found || v.count == 0) return error_json(name, "no import statistics (state '" + v.state + "')");
  nlohmann::json raw = raw_reference("rtt " + std::to_string(rounds) + " 4096");
  if (raw.contains("error")) return error_json(name, raw["error"].get<std::string>());
  const double raw_p50 = raw["p50"], raw_p99 = raw["p99"];
  const double e2e = wall_ms * 1000.0 / double(std::max<uint64_t>(1, v.faults));
  const double ratio = v.p50 / raw_p50, ratio99 = v.p99 / raw_p99;

  std::cout << fmt::format("{:<44} {:>9} {:>9} {:>9} {:>9}\n", "", "p50 us", "p90 us", "p99 us", "max us");
  std::cout << fmt::format("{:<44} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n", "pager fault service (ImportStat)", v.p50, v.p90,
                           v.p99, v.max);
  std::cout << fmt::format("{:<44} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n", "raw libfabric 4 KiB request/reply",
                           raw_p50, raw["p90"].get<double>(), raw_p99, raw["max"].get<double>());
  std::cout << fmt::format("  faults {} ({} pages on demand, {} zero pages without traffic, {} duplicates), state {}\n",
                           v.faults, v.on_demand, v.zero, v.duplicates, v.state);
  std::cout << fmt::format("  as the process sees it: {:.0f} ms for the run, {:.1f} us per fault (includes checking the page)\n",
                           wall_ms, e2e);
  if (!source_gone) std::cout << "  note: the source's shell outlived the import (killed at cluster down)\n";
  std::cout << fmt::format("  ratio pager/raw p50: {:.2f} (target <= 1.5: {}), p99: {:.2f}\n", ratio,
                           ratio <= 1.5 ? "met" : "missed", ratio99);
  return {{"name", name},
          {"unit", "us"},
          {"figures",
           {{"fault", {{"p50", v.p50}, {"p90", v.p90}, {"p99", v.p99}, {"max", v.max}, {"n", v.count}}},
            {"faults", v.faults},
            {"on_demand_pages", v.on_demand},
            {"zero_pages", v.zero},
            {"duplicate_pages", v.duplicates},
            {"process_us_per_fault", e2e},
            {"region_mib", mib}}},
          {"reference", {{"raw_4k_request_reply", raw}}},
          {"ratio", {{"p50", ratio}, {"p99", ratio99}}},
          {"target", {{"p50_ratio_max", 1.5}}},
          {"provider", "tcp;ofi_rxm"},
          {"machine", machine_description()}};
}

// ---------------------------------------------------------------------------------------------
// prefetch-throughput

nlohmann::json prefetch_throughput(const std::vector<std::string>& args) {
  const std::string name = "prefetch-throughput";
  const uint64_t mib = args.size() > 0 ? std::max(64, std::atoi(args[0].c_str())) : 1024;
  std::cout << fmt::format("prefetch-throughput: {} MiB region, prefetch on, the process idle until the last page "
                           "arrived; raw: 1 MiB replies, {} in flight, provider tcp;ofi_rxm, {} -> {}\n",
                           mib, kBulkInFlight, kServerHost, kClientHost);
  ImportView v;
  double wall_ms = 0, n1_cpu_ms = 0, n2_cpu_ms = 0;
  Exported exported;
  std::string verified;
  bool source_gone = false;
  {
    Move m;
    if (auto err = m.prepare(mib, "2", "seq"); !err.empty()) return error_json(name, err);
    Clock::time_point t0;
    pid_t p1 = m.cluster->pager_pid("n1"), p2 = m.cluster->pager_pid("n2");
    double cpu1 = cpu_ms(p1), cpu2 = cpu_ms(p2);
    if (auto err = m.export_and_import(true, &t0); !err.empty()) return error_json(name, err);
    exported = m.exported;
    v = wait_ended(*m.cluster, m.label, 120s, 20ms);
    wall_ms = ms_since(t0);
    n1_cpu_ms = cpu_ms(p1) - cpu1;
    n2_cpu_ms = cpu_ms(p2) - cpu2;
    if (v.state != "complete") return error_json(name, "import ended '" + v.state + "'");
    source_gone = m.source_gone(5s);
    verified = m.verify();  // every byte, now local
  }
  if (v.bytes == 0 || v.ms_to_last_page <= 0) return error_json(name, "nothing moved");
  const double mib_s = double(v.bytes) / kMiB / (v.ms_to_last_page / 1000.0);
  const double steady = steady_mib_s(v.window_bytes);
  nlohmann::json raw = raw_reference("bulk " + std::to_string(v.bytes));
  if (raw.contains("error")) return error_json(name, raw["error"].get<std::string>());
  const double raw_mib_s = raw["mib_s"];
  const double ratio = mib_s / raw_mib_s;

  std::cout << fmt::format("{:<44} {:>10} {:>10} {:>10}\n", "", "MiB", "ms", "MiB/s");
  std::cout << fmt::format("{:<44} {:>10.0f} {:>10.0f} {:>10.0f}\n", "pager prefetch (bytes on wire / ms to last page)",
                           double(v.bytes) / kMiB, v.ms_to_last_page, mib_s);
  std::cout << fmt::format("{:<44} {:>10.0f} {:>10.0f} {:>10.0f}\n", "raw libfabric, 1 MiB replies",
                           raw["bytes"].get<double>() / kMiB, raw["ms"].get<double>(), raw_mib_s);
  std::cout << fmt::format("  pager steady state (median 100 ms window): {:.0f} MiB/s; wall time seen here {:.0f} ms; "
                           "export took {:.0f} ms\n", steady, wall_ms, exported.ms);
  std::cout << fmt::format("  pager CPU during the move: n1 (exporter) {:.0f} ms = {:.0f}% of a CPU, n2 (importer) {:.0f} ms "
                           "= {:.0f}%\n", n1_cpu_ms, 100 * n1_cpu_ms / wall_ms, n2_cpu_ms, 100 * n2_cpu_ms / wall_ms);
  std::cout << fmt::format("  pages: {} with data, {} prefetched, {} on demand, {} faults, {} zero, {} duplicates\n",
                           v.present, v.prefetched, v.on_demand, v.faults, v.zero, v.duplicates);
  std::cout << fmt::format("  check of every byte afterwards: {}; source shell gone: {}\n",
                           verified.empty() ? "ok" : verified, source_gone ? "yes" : "no");
  std::cout << fmt::format("  ratio pager/raw: {:.2f} (target >= 0.8: {})\n", ratio, ratio >= 0.8 ? "met" : "missed");
  nlohmann::json figures{{"mib_s", mib_s},
                         {"steady_mib_s", steady},
                         {"bytes_on_wire", v.bytes},
                         {"ms_to_last_page", v.ms_to_last_page},
                         {"export_ms", exported.ms},
                         {"n1_cpu_ms", n1_cpu_ms},
                         {"n2_cpu_ms", n2_cpu_ms},
                         {"prefetched_pages", v.prefetched},
                         {"on_demand_pages", v.on_demand},
                         {"duplicate_pages", v.duplicates},
                         {"region_mib", mib},
                         {"verified", verified.empty()}};
  if (!verified.empty()) figures["verify_error"] = verified;
  return {{"name", name},
          {"unit", "MiB/s"},
          {"figures", figures},
          {"reference", {{"raw_bulk_1mib", raw}}},
          {"ratio", {{"throughput", ratio}}},
          {"target", {{"throughput_ratio_min", 0.8}}},
          {"provider", "tcp;ofi_rxm"},
          {"machine", machine_description()}};
}

// ---------------------------------------------------------------------------------------------
// pager-rss

// Samples the summed RSS of some processes every `period` on its own thread.
class RssSampler {
 public:
  RssSampler(std::vector<pid_t> pids, std::chrono::milliseconds period) : pids_(std::move(pids)) {
    t_ = std::thread([this, period] {
      while (!stop_) {
        sample();
        std::this_thread::sleep_for(period);
      }
      sample();
    });
  }
  ~RssSampler() { stop(); }
  void stop() {
    stop_ = true;
    if (t_.joinable()) t_.join();
  }
  long peak_kib = 0;
  std::vector<long> at_peak;  // per pid
  size_t samples = 0;

 private:
  void sample() {
    std::vector<long> v;
    long sum = 0;
    for (pid_t p : pids_) sum += v.emplace_back(rss_kib(p));
    ++samples;
    if (sum > peak_kib) peak_kib = sum, at_peak = v;
  }
  std::vector<pid_t> pids_;
  std::atomic<bool> stop_{false};
  std::thread t_;
};

nlohmann::json pager_rss(const std::vector<std::string>& args) {
  const std::string name = "pager-rss";
  const uint64_t mib = args.size() > 0 ? std::max(64, std::atoi(args[0].c_str())) : 4096;
  std::cout << fmt::format("pager-rss: {} MiB region, prefetch on, process idle; RSS of source shell + destination "
                           "process + both pagers every 20 ms\n", mib);
  ImportView v;
  long source_kib = 0, pagers_before = 0, peak = 0;
  std::vector<long> at_peak;
  size_t samples = 0;
  std::string verified;
  bool source_gone = false;
  double wall_ms = 0;
  {
    Move m;
    if (auto err = m.prepare(mib, "2", "stride"); !err.empty()) return error_json(name, err);
    source_kib = m.source_rss_kib;
    pid_t p1 = m.cluster->pager_pid("n1"), p2 = m.cluster->pager_pid("n2");
    pagers_before = rss_kib(p1) + rss_kib(p2);
    auto t0 = Clock::now();
    {
      RssSampler sampler({m.source->pid, m.faulter->pid, p1, p2}, 20ms);
      if (auto err = m.export_and_import(true); !err.empty()) return error_json(name, err);
      v = wait_ended(*m.cluster, m.label, 180s);
      source_gone = m.source_gone(5s);
      sampler.stop();
      peak = sampler.peak_kib;
      at_peak = sampler.at_peak;
      samples = sampler.samples;
    }
    wall_ms = ms_since(t0);
    if (v.state != "complete") return error_json(name, "import ended '" + v.state + "'");
    verified = m.verify();
  }
  if (source_kib <= 0 || at_peak.size() != 4) return error_json(name, "no RSS samples");
  const double ratio = double(peak) / double(source_kib);
  auto gib = [](long kib) { return double(kib) / (1024.0 * 1024.0); };
  std::cout << fmt::format("{:<44} {:>10}\n", "", "GiB");
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "source RSS before export (reference)", gib(source_kib));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "peak of the sum during the move", gib(peak));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "  of which source shell", gib(at_peak[0]));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "  of which destination process", gib(at_peak[1]));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "  of which pager n1 + pager n2", gib(at_peak[2] + at_peak[3]));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "pagers n1 + n2 before the move", gib(pagers_before));
  std::cout << fmt::format("  {} samples; move took {:.0f} ms to the last page ({:.0f} MiB/s), {:.0f} ms in all\n", samples,
                           v.ms_to_last_page, v.ms_to_last_page > 0 ? double(v.bytes) / kMiB / (v.ms_to_last_page / 1000) : 0.0,
                           wall_ms);
  std::cout << fmt::format("  check afterwards: {}; source shell gone: {}\n", verified.empty() ? "ok" : verified,
                           source_gone ? "yes" : "no");
  std::cout << fmt::format("  ratio peak/source: {:.3f} (target <= 1.1: {})\n", ratio, ratio <= 1.1 ? "met" : "missed");
  nlohmann::json figures{{"peak_sum_kib", peak},
                         {"peak_source_kib", at_peak[0]},
                         {"peak_destination_kib", at_peak[1]},
                         {"peak_pagers_kib", at_peak[2] + at_peak[3]},
                         {"pagers_before_kib", pagers_before},
                         {"samples", samples},
                         {"ms_to_last_page", v.ms_to_last_page},
                         {"bytes_on_wire", v.bytes},
                         {"region_mib", mib},
                         {"verified", verified.empty()}};
  if (!verified.empty()) figures["verify_error"] = verified;
  return {{"name", name},
          {"unit", "KiB"},
          {"figures", figures},
          {"reference", {{"source_rss_kib", source_kib}}},
          {"ratio", {{"peak_vs_source", ratio}}},
          {"target", {{"ratio_max", 1.1}}},
          {"machine", machine_description()}};
}

Register fault_reg({"fault-latency", "pager 4 KiB fault service p50/p99 (prefetch off) vs raw libfabric 4 KiB request/reply",
                    fault_latency});
Register prefetch_reg({"prefetch-throughput", "pager prefetch MiB/s over 1 GiB vs raw libfabric 1 MiB replies, 4 in flight",
                       prefetch_throughput});
Register rss_reg({"pager-rss", "peak RSS of source + destination + pagers while 4 GiB moves, vs the source's own",
                  pager_rss});

}  // namespace
}  // namespace ferry::bench
