// ferry-agent: the process management agent of a node. For now it serves the CLI's requests
// that concern the cluster (`ferry nodes`, by asking the master) and pings; launching,
// freezing and migrating processes arrive with the migration issues.
#include <memory>

#include "pm/pm.capnp.h"
#include "runtime/daemon.h"

namespace {

using ferry::dipc::Port;
using ferry::dipc::Request;

// The CLI talks to its local agent; what only the master knows is asked of the master on the
// caller's behalf and the answer relayed as it is.
void relay_to_master(Port& port) {
  port.serve<ferry::pm::wire::ListNodes>([&port](Request& req) {
    auto pending = std::make_shared<Request>(std::move(req));
    port.call<ferry::pm::wire::ListNodes, ferry::pm::wire::NodeList>(
        "master", [](auto) {},
        [pending](ferry::Result<ferry::dipc::Message<ferry::pm::wire::NodeList>> r) {
          if (!r) return pending->fail(r.error().code, "the master did not answer: " + r.error().message);
          pending->relay(r.value().inbound());
        },
        ferry::dipc::CallOptions{std::chrono::milliseconds(0), pending->caller().uid});
  });
}

}  // namespace

int main(int argc, char** argv) {
  return ferry::runtime::daemon_main(
      "agent", argc, argv,
      [](Port& port, const ferry::runtime::DaemonConfig&) -> ferry::Result<std::shared_ptr<void>> {
        relay_to_master(port);
        return std::shared_ptr<void>();
      });
}
