// The `ferry` command line: each command is a function from parsed options to an exit status,
// printing what a person needs and errors that name the problem. Internal to runtime/cli/.
#pragma once

#include <string>

#include "runtime/cluster/local_cluster.h"

namespace ferry::cli {

struct Context {
  runtime::ClusterLayout layout;
  std::string node;  // the CLI's local node ("" = the cluster's first node)
  bool json = false;
};

int cluster_up(const Context& ctx, const runtime::ClusterUpOptions& options);
int cluster_down(const Context& ctx);
int nodes(const Context& ctx);
int ping(const Context& ctx, const std::string& target, int count, int size);
int checkpoint(int pid, const std::string& dir, bool leave_running);
int restore(const std::string& dir);
int stat(const Context& ctx);

}  // namespace ferry::cli
