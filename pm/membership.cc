#include "pm/membership.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace ferry::pm {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

const char* node_state_name(wire::NodeState state) {
  switch (state) {
    case wire::NodeState::ALIVE: return "alive";
    case wire::NodeState::SUSPECT: return "suspect";
    case wire::NodeState::DEAD: return "dead";
  }
  return "unknown";
}

std::vector<NodeStatus> node_states(const std::vector<dipc::PortRecord>& ports, const MembershipPolicy& policy,
                                    std::chrono::steady_clock::time_point now) {
  std::map<std::string, NodeStatus> nodes;
  for (const auto& p : ports) {
    if (p.node.empty()) continue;
    auto& n = nodes[p.node];
    n.name = p.node;
    auto age = std::max(milliseconds(0), duration_cast<milliseconds>(now - p.last_heard));
    n.heartbeat_age = std::max(n.heartbeat_age, age);
    if (p.name.rfind("agent@", 0) == 0 || n.address.empty()) n.address = p.address_text;
    n.ports.push_back(p);
  }
  std::vector<NodeStatus> out;
  for (auto& [name, n] : nodes) {
    n.state = n.heartbeat_age > policy.dead_after      ? wire::NodeState::DEAD
              : n.heartbeat_age > policy.suspect_after ? wire::NodeState::SUSPECT
                                                       : wire::NodeState::ALIVE;
    out.push_back(std::move(n));
  }
  // n2 before n10: by length, then by name.
  std::sort(out.begin(), out.end(), [](const NodeStatus& a, const NodeStatus& b) {
    return a.name.size() != b.name.size() ? a.name.size() < b.name.size() : a.name < b.name;
  });
  return out;
}

Membership::Membership(dipc::Port& port, dipc::NameService& names, MembershipPolicy policy)
    : port_(port), names_(names), policy_(policy) {
  names.set_liveness([this](const dipc::PortRecord& rec) -> std::optional<std::string> {
    for (const auto& n : nodes())
      if (n.name == rec.node && n.state == wire::NodeState::DEAD)
        return "node " + n.name + " is dead (no heartbeat for " + std::to_string(n.heartbeat_age.count()) + " ms)";
    return std::nullopt;
  });
  port_.serve<wire::ListNodes>([this](dipc::Request& req) {
    auto nodes = this->nodes();
    auto now = std::chrono::steady_clock::now();
    req.reply<wire::NodeList>([&](wire::NodeList::Builder b) {
      b.setHeartbeatMs(uint32_t(names_.heartbeat().count()));
      b.setSuspectMs(uint32_t(policy_.suspect_after.count()));
      b.setDeadMs(uint32_t(policy_.dead_after.count()));
      auto list = b.initNodes(uint32_t(nodes.size()));
      for (uint32_t i = 0; i < nodes.size(); ++i) {
        auto n = list[i];
        n.setName(nodes[i].name);
        n.setAddress(nodes[i].address);
        n.setState(nodes[i].state);
        n.setHeartbeatAgeMs(uint64_t(nodes[i].heartbeat_age.count()));
        auto ports = n.initPorts(uint32_t(nodes[i].ports.size()));
        for (uint32_t j = 0; j < nodes[i].ports.size(); ++j) {
          const auto& p = nodes[i].ports[j];
          ports[j].setName(p.name);
          ports[j].setAddress(p.address_text);
          ports[j].setPid(p.pid);
          ports[j].setHeartbeatAgeMs(uint64_t(std::max<int64_t>(0, duration_cast<milliseconds>(now - p.last_heard).count())));
        }
      }
    });
  });
  timer_ = port_.loop().every(names_.heartbeat(), [this] { check(); });
}

Membership::~Membership() { port_.loop().cancel(timer_); }

std::vector<NodeStatus> Membership::nodes() const {
  return node_states(names_.ports(), policy_, std::chrono::steady_clock::now());
}

void Membership::check() {
  for (const auto& n : nodes()) {
    auto it = last_.find(n.name);
    if (it == last_.end()) {
      spdlog::info("node {} joined at {} ({})", n.name, n.address, node_state_name(n.state));
    } else if (it->second != n.state) {
      spdlog::info("node {} {} -> {} (last heartbeat {} ms ago)", n.name, node_state_name(it->second),
                   node_state_name(n.state), n.heartbeat_age.count());
      if (n.state == wire::NodeState::DEAD && on_dead_) on_dead_(n.name, n.heartbeat_age);
    }
    last_[n.name] = n.state;
  }
}

}  // namespace ferry::pm
