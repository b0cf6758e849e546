// ferry-agent: the process management agent of a node (pm/agent.h): launches jobs, routes
// operations on them by global pid, runs both ends of a migration; and relays what only the
// master knows (`ferry nodes`).
#include <memory>

#include "pm/agent.h"
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
      [](Port& port, const ferry::runtime::DaemonConfig& cfg) -> ferry::Result<std::shared_ptr<void>> {
        relay_to_master(port);
        ferry::pm::AgentOptions o;
        o.node = cfg.node;
        o.state_dir = cfg.state_dir;
        o.timeout = std::chrono::milliseconds(cfg.timeout_ms);
        return std::shared_ptr<void>(std::make_shared<ferry::pm::Agent>(port, o));
      },
      2 * 1024 * 1024 - 4096);
}
