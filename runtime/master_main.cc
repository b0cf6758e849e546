// ferry-master: the name service for ports, node membership, and the process table (global
// pids, where each job is, the commit point of every migration).
#include <filesystem>
#include <memory>
#include <set>

#include "dipc/name_service.h"
#include "pm/membership.h"
#include "pm/process_table.h"
#include "runtime/daemon.h"

namespace {

struct MasterServices {
  ferry::dipc::NameService names;
  ferry::pm::Membership membership;
  std::unique_ptr<ferry::pm::ProcessTable> processes;
  MasterServices(ferry::dipc::Port& port, const ferry::runtime::DaemonConfig& cfg,
                 std::unique_ptr<ferry::pm::ProcessTable> table)
      : names(port, std::chrono::milliseconds(cfg.heartbeat_ms)),
        membership(port, names,
                   ferry::pm::MembershipPolicy{.heartbeat = std::chrono::milliseconds(cfg.heartbeat_ms),
                                               .suspect_after = std::chrono::milliseconds(cfg.suspect_ms),
                                               .dead_after = std::chrono::milliseconds(cfg.dead_ms),
                                               .dead_limit = std::chrono::milliseconds(cfg.dead_limit_ms),
                                               .probe_timeout = std::chrono::milliseconds(cfg.probe_ms)}),
        processes(std::move(table)) {
    membership.on_dead([this](const std::string& node, const std::string& why) { processes->node_died(node, why); });
    // A restarted master: a node that held jobs and does not come back within the time that
    // makes a silent node dead is dead (its heartbeats would otherwise never be missed). Its
    // ports register again on their own once their heartbeats find the master new.
    auto grace = std::chrono::milliseconds(cfg.dead_ms + cfg.probe_ms + cfg.heartbeat_ms);
    port.loop().after(grace, [this, grace] {
      std::set<std::string> seen;
      for (const auto& n : membership.nodes()) seen.insert(n.name);
      for (const auto& node : processes->nodes_with_jobs())
        if (!seen.count(node))
          processes->node_died(node, "not back " + std::to_string(grace.count()) + " ms after the master restarted");
    });
  }
};

}  // namespace

int main(int argc, char** argv) {
  return ferry::runtime::daemon_main(
      "master", argc, argv,
      [](ferry::dipc::Port& port, const ferry::runtime::DaemonConfig& cfg) -> ferry::Result<std::shared_ptr<void>> {
        auto table = ferry::pm::ProcessTable::open(port, std::filesystem::path(cfg.state_dir) / "processes.json");
        if (!table) return table.error();
        return std::shared_ptr<void>(std::make_shared<MasterServices>(port, cfg, std::move(table.value())));
      });
}
