#include <iostream>

#include "runtime/cli/commands.h"

namespace ferry::cli {

int cluster_up(const Context& ctx, const runtime::ClusterUpOptions& options) {
  auto m = runtime::cluster_up(ctx.layout, options, [](const std::string& step) { std::cerr << "ferry: " << step << "\n"; });
  if (!m) {
    std::cerr << "ferry: cluster up failed: " << m.error().message << "\n";
    return 1;
  }
  std::cout << "cluster " << m.value().name << " up: " << m.value().nodes.size() << " nodes"
            << (m.value().netns ? " in network namespaces" : " on loopback") << ", master at "
            << m.value().master_address << ", state in " << ctx.layout.dir().string() << "\n";
  return 0;
}

int cluster_down(const Context& ctx) {
  auto r = runtime::cluster_down(ctx.layout);
  if (!r) {
    std::cerr << "ferry: cluster down: " << r.error().message << "\n";
    return 1;
  }
  std::cout << r.value() << "\n";
  return 0;
}

int cluster_kill(const Context& ctx, const std::string& node) {
  auto r = runtime::cluster_kill_node(ctx.layout, node);
  if (!r) {
    std::cerr << "ferry: cluster kill: " << r.error().message << "\n";
    return 1;
  }
  std::cout << r.value() << "\n";
  return 0;
}

int cluster_node_action(const Context& ctx, const std::string& action, const std::string& node) {
  auto r = action == "restart" ? runtime::cluster_restart_node(ctx.layout, node)
                               : runtime::cluster_set_link(ctx.layout, node, action == "heal");
  if (!r) {
    std::cerr << "ferry: cluster " << action << ": " << r.error().message << "\n";
    return 1;
  }
  std::cout << r.value() << "\n";
  return 0;
}

}  // namespace ferry::cli
