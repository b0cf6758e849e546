// Node membership, kept by the master: which nodes are alive, suspect or dead, judged from the
// heartbeats its name service receives. Serves ListNodes (what `ferry nodes` shows) and logs
// every change of a node's state, one line each.
//
// Thread-safety: loop thread only, like the Port and NameService it works with.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dipc/name_service.h"
#include "pm/pm.capnp.h"

namespace ferry::pm {

struct MembershipPolicy {
  std::chrono::milliseconds suspect_after{1500};  // no heartbeat for this long: suspect
  std::chrono::milliseconds dead_after{3000};     // no heartbeat for this long: dead
};

struct NodeStatus {
  std::string name;
  std::string address;
  wire::NodeState state = wire::NodeState::ALIVE;
  std::chrono::milliseconds heartbeat_age{0};
  std::vector<dipc::PortRecord> ports;
};

// Pure: the nodes of a name-service table at time `now` (the master itself is not a node).
std::vector<NodeStatus> node_states(const std::vector<dipc::PortRecord>& ports,
                                    const MembershipPolicy& policy,
                                    std::chrono::steady_clock::time_point now);

const char* node_state_name(wire::NodeState state);

class Membership {
 public:
  // Serves ListNodes on `port` and checks node states once per heartbeat period.
  // Also tells `names` to refuse resolving ports of dead nodes.
  Membership(dipc::Port& port, dipc::NameService& names, MembershipPolicy policy);
  ~Membership();

  std::vector<NodeStatus> nodes() const;
  // Called once each time a node becomes dead.
  void on_dead(std::function<void(const std::string& node, std::chrono::milliseconds silent)> cb) { on_dead_ = std::move(cb); }

 private:
  void check();

  dipc::Port& port_;
  const dipc::NameService& names_;
  MembershipPolicy policy_;
  std::map<std::string, wire::NodeState> last_;
  dipc::EventLoop::TimerId timer_ = 0;
  std::function<void(const std::string&, std::chrono::milliseconds)> on_dead_;
};

}  // namespace ferry::pm
