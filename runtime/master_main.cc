// ferry-master: the name service for ports, node membership, and the process table (global
// pids, where each job is, the commit point of every migration).
#include <memory>

#include "dipc/name_service.h"
#include "pm/membership.h"
#include "pm/process_table.h"
#include "runtime/daemon.h"

namespace {

struct MasterServices {
  ferry::dipc::NameService names;
  ferry::pm::Membership membership;
  ferry::pm::ProcessTable processes;
  MasterServices(ferry::dipc::Port& port, const ferry::runtime::DaemonConfig& cfg)
      : names(port, std::chrono::milliseconds(cfg.heartbeat_ms)),
        membership(port, names,
                   ferry::pm::MembershipPolicy{std::chrono::milliseconds(cfg.suspect_ms),
                                               std::chrono::milliseconds(cfg.dead_ms)}),
        processes(port) {
    membership.on_dead([this](const std::string& node, std::chrono::milliseconds silent) {
      processes.node_died(node, "no heartbeat for " + std::to_string(silent.count()) + " ms");
    });
  }
};

}  // namespace

int main(int argc, char** argv) {
  return ferry::runtime::daemon_main(
      "master", argc, argv,
      [](ferry::dipc::Port& port, const ferry::runtime::DaemonConfig& cfg) -> ferry::Result<std::shared_ptr<void>> {
        return std::shared_ptr<void>(std::make_shared<MasterServices>(port, cfg));
      });
}
