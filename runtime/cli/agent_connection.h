// How the CLI reaches its cluster: the unix socket of the local node's agent (or the master's,
// for what only concerns the cluster when the agent is not there). Internal to runtime/cli/.
#pragma once

#include <memory>
#include <string>

#include "dipc/local_client.h"
#include "runtime/cli/commands.h"

namespace ferry::cli {

// The local agent's client; the error names the cluster, the node and the socket.
Result<std::unique_ptr<dipc::LocalClient>> connect_agent(const Context& ctx);
// The local agent if it answers, else the master. `via` says which.
Result<std::unique_ptr<dipc::LocalClient>> connect_agent_or_master(const Context& ctx, std::string& via);

}  // namespace ferry::cli
