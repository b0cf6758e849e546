// `ferry fault set NODE POINT ACTION`, `fault clear NODE [POINT]`, `fault list NODE`: fault
// injection on a running daemon (dipc/faults.h). NODE's agent and pager each own their points;
// "master" names the master. Talks to the daemons' unix sockets, as root.
#include <fmt/format.h>

#include <iostream>

#include "dipc/local_client.h"
#include "runtime/cli/commands.h"

namespace ferry::cli {
namespace {

struct Daemon {
  std::string name;
  std::unique_ptr<dipc::LocalClient> client;
};

// The daemons of NODE that answer on their sockets; `silent` says which do not, and why.
Result<std::vector<Daemon>> daemons_of(const Context& ctx, const std::string& node, std::string* silent = nullptr) {
  std::vector<std::pair<std::string, std::string>> roles;
  if (node == "master")
    roles = {{"master", ""}};
  else
    roles = {{"agent", node}, {"pager", node}};
  std::vector<Daemon> out;
  std::string missing;
  for (const auto& [role, n] : roles) {
    auto c = dipc::LocalClient::connect(ctx.layout.socket(role, n));
    if (!c) {
      missing += (missing.empty() ? "" : "; ") + c.error().message;
      continue;
    }
    out.push_back({n.empty() ? role : role + "@" + n, std::move(c).value()});
  }
  if (out.empty()) return make_error(ErrorCode::kNotFound, "no daemon of " + node + " answers: " + missing);
  if (silent) *silent = missing;
  return out;
}

}  // namespace

int fault_set(const Context& ctx, const std::string& node, const std::string& point, const std::string& action,
              int delay_ms, int count) {
  std::string silent;
  auto ds = daemons_of(ctx, node, &silent);
  if (!ds) {
    std::cerr << "ferry: fault set: " << ds.error().message << "\n";
    return 1;
  }
  std::string known;
  for (auto& d : ds.value()) {
    auto list = d.client->call<dipc::wire::ListFaults, dipc::wire::FaultList>([](auto) {});
    if (!list) {
      silent += (silent.empty() ? "" : "; ") + d.name + ": " + list.error().message;
      continue;
    }
    bool here = false;
    for (auto p : list.value().get().getPoints()) {
      known += (known.empty() ? "" : ", ") + std::string(p.getName().cStr());
      here = here || p.getName() == point;
    }
    if (!here) continue;
    auto r = d.client->call<dipc::wire::SetFault, dipc::wire::Empty>([&](dipc::wire::SetFault::Builder b) {
      b.setPoint(point);
      b.setAction(action);
      b.setDelayMs(uint32_t(std::max(delay_ms, 0)));
      b.setCount(uint32_t(std::max(count, 0)));
    });
    if (!r) {
      std::cerr << "ferry: fault set: " << d.name << ": " << r.error().message << "\n";
      return 1;
    }
    std::cout << fmt::format("{}: {} at {}{}, {}\n", d.name, action, point,
                             action == "delay" ? fmt::format(" for {} ms", delay_ms) : "",
                             count == 0 ? "every time" : fmt::format("{} time(s)", count));
    return 0;
  }
  std::cerr << "ferry: fault set: " << node << " has no fault point '" << point << "' (points: " << known << ")";
  // A daemon that did not answer may be the one with the point (the pager's "install").
  if (!silent.empty()) std::cerr << "; not asked, for they do not answer: " << silent;
  std::cerr << "\n";
  return 1;
}

int fault_clear(const Context& ctx, const std::string& node, const std::string& point) {
  auto ds = daemons_of(ctx, node);
  if (!ds) {
    std::cerr << "ferry: fault clear: " << ds.error().message << "\n";
    return 1;
  }
  for (auto& d : ds.value()) {
    auto r = d.client->call<dipc::wire::ClearFaults, dipc::wire::Empty>(
        [&](dipc::wire::ClearFaults::Builder b) { b.setPoint(point); });
    if (!r) {
      std::cerr << "ferry: fault clear: " << d.name << ": " << r.error().message << "\n";
      return 1;
    }
  }
  std::cout << (point.empty() ? "every fault" : "fault at " + point) << " cleared on " << node << "\n";
  return 0;
}

int fault_list(const Context& ctx, const std::string& node) {
  auto ds = daemons_of(ctx, node);
  if (!ds) {
    std::cerr << "ferry: fault list: " << ds.error().message << "\n";
    return 1;
  }
  std::cout << fmt::format("{:<14} {:<11} {:<11} {:<24} {}\n", "DAEMON", "POINT", "SITE", "ARMED", "WHERE");
  for (auto& d : ds.value()) {
    auto list = d.client->call<dipc::wire::ListFaults, dipc::wire::FaultList>([](auto) {});
    if (!list) {
      std::cerr << "ferry: fault list: " << d.name << ": " << list.error().message << "\n";
      return 1;
    }
    for (auto p : list.value().get().getPoints())
      std::cout << fmt::format("{:<14} {:<11} {:<11} {:<24} {}\n", d.name, p.getName().cStr(), p.getSite().cStr(),
                               p.getArmed().size() ? p.getArmed().cStr() : "-", p.getDescription().cStr());
  }
  return 0;
}

}  // namespace ferry::cli
