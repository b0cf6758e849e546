// ferry-pager: the XMM pager of a node (xmm/pager.h): exports the memory of processes that
// migrated away and serves the faults of processes restored here.
#include <memory>

#include "runtime/daemon.h"
#include "xmm/pager.h"

int main(int argc, char** argv) {
  std::weak_ptr<ferry::xmm::Pager> running;
  return ferry::runtime::daemon_main(
      "pager", argc, argv,
      [&](ferry::dipc::Port& port, const ferry::runtime::DaemonConfig& cfg) -> ferry::Result<std::shared_ptr<void>> {
        ferry::xmm::PagerOptions o;
        o.bulk.name = "pager-bulk@" + cfg.node;
        o.bulk.node = cfg.node;
        o.bulk.fabric.provider = cfg.provider;
        o.bulk.fabric.host = cfg.host;
        o.bulk.master = cfg.master;
        o.bulk.key_file = cfg.key_file;
        o.bulk.request_timeout = std::chrono::milliseconds(cfg.timeout_ms);
        o.timeout = std::chrono::milliseconds(cfg.timeout_ms);
        auto pager = ferry::xmm::Pager::start(port, o);
        if (!pager) return pager.error();
        std::shared_ptr<ferry::xmm::Pager> shared(std::move(pager).value());
        running = shared;
        return std::shared_ptr<void>(shared);
      },
      ferry::xmm::kPagerMaxMessage,
      [&](std::function<void()> done) {
        if (auto p = running.lock())
          p->unregister(std::move(done));
        else
          done();
      },
      /*spin_us=*/250);
}
