// `ferry stat`: the page-fault traffic of the pagers: per import (a process whose memory is
// arriving on that node) faults, pages on demand and prefetched, zero pages, bytes, duplicate
// transfers, fault service latency and time to the last page; per export what was sent and
// freed. --json adds the time series (100 ms windows) for plotting. `ferry stat GPID` shows only
// that job's migrations (imports and exports labelled "gpid GPID ..."), on every node.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string_view>

#include "dipc/local_client.h"
#include "runtime/cli/commands.h"
#include "xmm/xmm.capnp.h"

namespace ferry::cli {
namespace {

nlohmann::json import_json(xmm::wire::ImportStat::Reader s) {
  nlohmann::json series = nlohmann::json::array();
  for (auto w : s.getSeries())
    series.push_back({{"at_ms", w.getAtMs()}, {"faults", w.getFaults()}, {"on_demand_pages", w.getOnDemandPages()},
                      {"prefetched_pages", w.getPrefetchedPages()}, {"bytes", w.getBytes()},
                      {"staged_pages", w.getStagedPages()}});
  auto l = s.getLatency();
  nlohmann::json percentiles = nlohmann::json::array();
  for (double v : s.getLatencyPercentiles()) percentiles.push_back(v);
  return {{"import", s.getImportId()},      {"label", s.getLabel().cStr()},
          {"pid", s.getPid()},              {"source", s.getSource().cStr()},
          {"state", s.getState().cStr()},   {"faults", s.getFaults()},
          {"on_demand_pages", s.getOnDemandPages()}, {"prefetched_pages", s.getPrefetchedPages()},
          {"zero_pages", s.getZeroPages()}, {"bytes_on_wire", s.getBytesOnWire()},
          {"duplicate_pages", s.getDuplicatePages()}, {"present_pages", s.getPresentPages()},
          {"arrived_pages", s.getArrivedPages()},
          {"fault_latency_us", {{"p50", l.getP50Us()}, {"p90", l.getP90Us()}, {"p99", l.getP99Us()}, {"max", l.getMaxUs()}, {"count", l.getCount()}}},
          {"latency_percentiles", percentiles}, {"staged_pages", s.getStagedPages()},
          {"ms_to_last_page", s.getMsToLastPage()}, {"elapsed_ms", s.getElapsedMs()}, {"series", series}};
}

}  // namespace

int stat(const Context& ctx, std::optional<uint64_t> gpid) {
  const std::string prefix = gpid ? fmt::format("gpid {} ", *gpid) : "";
  auto wanted = [&](capnp::Text::Reader label) { return std::string_view(label.cStr()).starts_with(prefix); };
  std::vector<std::string> nodes;
  if (!ctx.node.empty() && !gpid) {
    nodes.push_back(ctx.node);
  } else {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(ctx.layout.dir(), ec))
      if (std::filesystem::exists(e.path() / "pager.sock")) nodes.push_back(e.path().filename().string());
    std::sort(nodes.begin(), nodes.end());
    if (nodes.empty()) {
      std::cerr << "ferry: stat: no pager found in " << ctx.layout.dir().string() << " (is the cluster up?)\n";
      return 1;
    }
  }
  nlohmann::json out = nlohmann::json::array();
  bool failed = false;
  for (const auto& node : nodes) {
    auto client = dipc::LocalClient::connect(ctx.layout.socket("pager", node));
    if (!client) {
      std::cerr << "ferry: stat: " << client.error().message << "\n";
      failed = true;
      continue;
    }
    auto r = client.value()->call<xmm::wire::PagerStat, xmm::wire::PagerStatReply>([](auto) {});
    if (!r) {
      std::cerr << "ferry: stat: pager of " << node << ": " << r.error().message << "\n";
      failed = true;
      continue;
    }
    auto reply = r.value().get();
    nlohmann::json imports = nlohmann::json::array(), exports = nlohmann::json::array();
    for (auto s : reply.getImports())
      if (wanted(s.getLabel())) imports.push_back(import_json(s));
    for (auto s : reply.getExports())
      if (wanted(s.getLabel()))
        exports.push_back({{"object", s.getObjectId()}, {"label", s.getLabel().cStr()}, {"pid", s.getPid()},
                           {"present_pages", s.getPresentPages()}, {"sent_pages", s.getDeliveredPages()},
                           {"freed_pages", s.getFreedPages()}, {"bytes_sent", s.getBytesSent()},
                           {"state", s.getState().cStr()}});
    nlohmann::json precopies = nlohmann::json::array();
    for (auto p : reply.getPrecopies())
      if (wanted(p.getLabel()))
        precopies.push_back({{"label", p.getLabel().cStr()}, {"state", p.getState().cStr()}, {"round", p.getRound()},
                             {"pages_sent", p.getPagesSent()}, {"staged_pages", p.getStagedPages()},
                             {"last_dirty_pages", p.getLastDirtyPages()}, {"elapsed_ms", p.getElapsedMs()}});
    out.push_back({{"node", node}, {"imports", imports}, {"exports", exports}, {"precopies", precopies}});
  }
  if (ctx.json) {
    std::cout << out.dump(2) << "\n";
    return failed ? 1 : 0;
  }
  std::cout << fmt::format("{:<4} {:<24} {:>8} {:>9} {:>10} {:>8} {:>9} {:>4} {:>8} {:>8} {:>9}  {}\n", "NODE", "IMPORT",
                           "FAULTS", "ON-DEMAND", "PREFETCHED", "ZERO", "MiB", "DUP", "P50 us", "P99 us", "LAST PAGE",
                           "STATE");
  for (const auto& n : out)
    for (const auto& i : n["imports"])
      std::cout << fmt::format("{:<4} {:<24} {:>8} {:>9} {:>10} {:>8} {:>9.1f} {:>4} {:>8.1f} {:>8.1f} {:>9}  {}\n",
                               n["node"].get<std::string>(), i["label"].get<std::string>().substr(0, 24),
                               i["faults"].get<uint64_t>(), i["on_demand_pages"].get<uint64_t>(),
                               i["prefetched_pages"].get<uint64_t>(), i["zero_pages"].get<uint64_t>(),
                               double(i["bytes_on_wire"].get<uint64_t>()) / (1 << 20), i["duplicate_pages"].get<uint64_t>(),
                               i["fault_latency_us"]["p50"].get<double>(), i["fault_latency_us"]["p99"].get<double>(),
                               i["ms_to_last_page"].get<double>() > 0
                                   ? fmt::format("{:.0f} ms", i["ms_to_last_page"].get<double>())
                                   : std::string("-"),
                               i["state"].get<std::string>());
  for (const auto& n : out)
    for (const auto& e : n["exports"])
      std::cout << fmt::format("{:<4} export {} ({}): {} of {} pages with data sent, {} freed at the source, {}\n",
                               n["node"].get<std::string>(), e["object"].get<uint64_t>(), e["label"].get<std::string>(),
                               e["sent_pages"].get<uint64_t>(), e["present_pages"].get<uint64_t>(),
                               e["freed_pages"].get<uint64_t>(), e["state"].get<std::string>());
  for (const auto& n : out)
    for (const auto& p : n["precopies"])
      std::cout << fmt::format("{:<4} {}: {}, round {}, {} pages sent, {} staged, {} written again in the last round\n",
                               n["node"].get<std::string>(), p["label"].get<std::string>(), p["state"].get<std::string>(),
                               p["round"].get<uint32_t>(), p["pages_sent"].get<uint64_t>(),
                               p["staged_pages"].get<uint64_t>(), p["last_dirty_pages"].get<uint64_t>());
  return failed ? 1 : 0;
}

}  // namespace ferry::cli
