// ferry-pager: the XMM pager of a node. For now a port that registers, heartbeats and answers
// pings; exporting and importing memory objects arrive with the pager issue.
#include <memory>

#include "runtime/daemon.h"

int main(int argc, char** argv) {
  return ferry::runtime::daemon_main(
      "pager", argc, argv,
      [](ferry::dipc::Port&, const ferry::runtime::DaemonConfig&) -> ferry::Result<std::shared_ptr<void>> {
        return std::shared_ptr<void>();
      });
}
