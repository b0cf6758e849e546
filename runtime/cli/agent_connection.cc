#include "runtime/cli/agent_connection.h"

namespace ferry::cli {
namespace {

std::string local_node(const Context& ctx) {
  if (!ctx.node.empty()) return ctx.node;
  auto m = runtime::read_manifest(ctx.layout);
  if (m && !m.value().nodes.empty()) return m.value().nodes.front();
  return "n1";
}

}  // namespace

// The chosen node's agent; without an explicit --node, the first node whose agent answers (a
// local cluster's CLI works on whatever node is alive).
Result<std::unique_ptr<dipc::LocalClient>> connect_agent(const Context& ctx) {
  std::string node = local_node(ctx);
  auto c = dipc::LocalClient::connect(ctx.layout.socket("agent", node));
  if (!c && ctx.node.empty())
    if (auto m = runtime::read_manifest(ctx.layout))
      for (const auto& other : m.value().nodes)
        if (other != node)
          if (auto alt = dipc::LocalClient::connect(ctx.layout.socket("agent", other))) return alt;
  if (!c)
    return make_error(c.error().code, "cannot reach agent@" + node + " of cluster " + ctx.layout.name() + " (" +
                                          c.error().message + "); is the cluster up?");
  return c;
}

Result<std::unique_ptr<dipc::LocalClient>> connect_agent_or_master(const Context& ctx, std::string& via) {
  auto agent = connect_agent(ctx);
  if (agent) {
    via = "agent@" + local_node(ctx);
    return agent;
  }
  auto master = dipc::LocalClient::connect(ctx.layout.socket("master", ""));
  if (!master) return agent.error();
  via = "master";
  return master;
}

}  // namespace ferry::cli
