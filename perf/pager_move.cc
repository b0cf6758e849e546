// One region moved by the pagers (pager_move.h).
#include "perf/pager_move.h"

#include <algorithm>
#include <thread>

#include "perf/bench.h"
#include "pm/capture.h"
#include "xmm/xmm.capnp.h"

namespace ferry::bench {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace wire = xmm::wire;
constexpr double kMiB = 1024.0 * 1024.0;

// Freezes `pid`, hands it over and exports [start, end) from n1's pager.
Result<Exported> export_from_n1(const Cluster& cluster, pid_t pid, uint64_t start, uint64_t end,
                                const std::string& label) {
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

Status import_into_n2(const Cluster& cluster, const Exported& e, pid_t pid, int fd, uint64_t start,
                      uint64_t end, bool prefetch, const std::string& label) {
  auto c = cluster.pager("n2");
  if (!c) return c.error();
  auto r = c.value()->call<wire::ImportMemory, wire::ImportReply>(
      [&](wire::ImportMemory::Builder b) {
        auto cap = b.initCapability();
        cap.setObjectId(e.id);
        cap.setToken(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(e.token.data()),
                                         e.token.size()));
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

}  // namespace

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
    v.p50 = l.getP50Us(), v.p90 = l.getP90Us(), v.p99 = l.getP99Us(), v.max = l.getMaxUs(),
    v.count = l.getCount();
    v.ms_to_last_page = s.getMsToLastPage();
    v.elapsed_ms = s.getElapsedMs();
    v.window_bytes.clear();
    for (auto w : s.getSeries()) v.window_bytes.push_back(w.getBytes());
  }
  return v;
}

namespace {

bool ended(const std::string& state) {
  return state == "complete" || state.rfind("ended", 0) == 0 || state.rfind("failed", 0) == 0;
}

// Polls n2's view until the import ended (complete, ended, failed) or `timeout` passed.
}  // namespace

ImportView wait_ended(const Cluster& cluster, const std::string& label,
                      std::chrono::milliseconds timeout, std::chrono::milliseconds every) {
  auto until = Clock::now() + timeout;
  ImportView v;
  for (;;) {
    v = import_stat(cluster, label);
    if (ended(v.state) || Clock::now() >= until) return v;
    check_interrupted();
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

std::string Move::prepare(uint64_t mib_, const std::string& faulter_threads,
                          const std::string& mode) {
  mib = mib_;
  end = kPatternBase + mib * 256 * kPageBytes;
  label = "bench " + mode + " " + std::to_string(mib) + " MiB";
  for (const char* p : {"pattern_source", "pattern_faulter"})
    if (!fs::exists(test_program(p)))
      return "missing " + test_program(p) + " (build the tests/programs targets)";
  if (std::string err = cluster->up(); !err.empty()) return err;
  source = std::make_unique<Child>(
      std::vector<std::string>{test_program("pattern_source"), std::to_string(mib)});
  if (std::string l = source->line(120s); l != "ready") return "pattern_source said '" + l + "'";
  source_rss_kib = rss_kib(source->pid);
  faulter = std::make_unique<Child>(std::vector<std::string>{
      test_program("pattern_faulter"), std::to_string(mib), faulter_threads, mode});
  return "";
}
std::string Move::export_and_import(bool prefetch, Clock::time_point* import_started) {
  std::string hello = faulter->line();
  if (hello.rfind("uffd ", 0) != 0) return "pattern_faulter said '" + hello + "'";
  auto e = export_from_n1(*cluster, source->pid, kPatternBase, end, label);
  if (!e) return "export: " + e.error().message;
  exported = e.value();
  if (import_started) *import_started = Clock::now();
  Status s = import_into_n2(*cluster, exported, faulter->pid, std::atoi(hello.c_str() + 5),
                            kPatternBase, end, prefetch, label);
  if (!s) return "import: " + s.error().message;
  return "";
}
std::string Move::verify(std::chrono::milliseconds timeout) {
  if (!faulter->say("go\n")) return "cannot talk to pattern_faulter";
  std::string result = faulter->line(timeout);
  int status = faulter->wait(30s);
  if (result.find("mismatches 0") == std::string::npos || status != 0)
    return "pattern_faulter: '" + result + "', status " + std::to_string(status);
  return "";
}
Move::~Move() {
  cluster.reset();
  faulter.reset();
  source.reset();
}

}  // namespace ferry::bench
