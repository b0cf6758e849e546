#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "pm/membership.h"
#include "runtime/cli/agent_connection.h"

namespace ferry::cli {

int nodes(const Context& ctx) {
  std::string via;
  auto client = connect_agent_or_master(ctx, via);
  if (!client) {
    std::cerr << "ferry: " << client.error().message << "\n";
    return 1;
  }
  auto r = client.value()->call<pm::wire::ListNodes, pm::wire::NodeList>([](auto) {});
  if (!r) {
    std::cerr << "ferry: nodes: " << r.error().message << "\n";
    return 1;
  }
  auto list = r.value().get();
  if (ctx.json) {
    nlohmann::json out = nlohmann::json::array();
    for (auto n : list.getNodes()) {
      nlohmann::json ports = nlohmann::json::array();
      for (auto p : n.getPorts())
        ports.push_back({{"name", p.getName().cStr()}, {"address", p.getAddress().cStr()}, {"pid", p.getPid()},
                         {"heartbeat_age_ms", p.getHeartbeatAgeMs()}});
      out.push_back({{"name", n.getName().cStr()},
                     {"address", n.getAddress().cStr()},
                     {"state", pm::node_state_name(n.getState())},
                     {"heartbeat_age_ms", n.getHeartbeatAgeMs()},
                     {"ports", ports}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<6} {:<22} {:<8} {:>13}  {}\n", "NODE", "ADDRESS", "STATE", "HEARTBEAT", "PORTS");
  for (auto n : list.getNodes()) {
    std::string ports;
    for (auto p : n.getPorts()) ports += (ports.empty() ? "" : " ") + std::string(p.getName().cStr());
    std::cout << fmt::format("{:<6} {:<22} {:<8} {:>5.1f} s ago  {}\n", n.getName().cStr(), n.getAddress().cStr(),
                             pm::node_state_name(n.getState()), double(n.getHeartbeatAgeMs()) / 1000.0, ports);
  }
  if (via == "master") std::cerr << "ferry: (the local agent did not answer; this list came from the master)\n";
  return 0;
}

}  // namespace ferry::cli
