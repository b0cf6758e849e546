// The network of a --netns cluster: a hub namespace holding a bridge (and the master), and one
// namespace per node joined to it by a veth pair. Nothing of it is in the root namespace:
// addresses exist only inside these namespaces and are only ever used from inside them.
//
//   fy-<cluster>-hub   br0 10.77.0.1/24, v-n1, v-n2, ...   (the master listens here)
//   fy-<cluster>-n1    eth0 10.77.0.2/24 (veth peer of v-n1), lo
//
// Clusters do not clash: each has its own namespaces, so the same subnet is reused.
// Built with iproute2's `ip`. Internal to runtime/cluster/.
#pragma once

#include <string>
#include <vector>

#include "dipc/status.h"

namespace ferry::runtime {

struct NetnsTopology {
  std::string hub;                 // hub namespace name
  std::vector<std::string> nodes;  // node namespace names, n1 first
  std::string hub_address;         // 10.77.0.1
  std::vector<std::string> node_addresses;

  static NetnsTopology plan(const std::string& cluster, int nodes);
  static std::string node_namespace(const std::string& cluster, const std::string& node);
  static std::string hub_namespace(const std::string& cluster);
};

// Creates every namespace, the bridge and the links. On failure removes what it made.
Status create_topology(const NetnsTopology& t);
// Removes the namespaces (their links go with them). Missing ones are skipped.
// Returns how many it removed.
int destroy_topology(const NetnsTopology& t);
bool netns_exists(const std::string& name);
// Sets the link of a node down or up (the node's veth end in the hub): cutting its network.
Status set_node_link(const NetnsTopology& t, const std::string& node, bool up);

}  // namespace ferry::runtime
