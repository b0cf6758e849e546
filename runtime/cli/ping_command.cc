#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "runtime/cli/agent_connection.h"

namespace ferry::cli {

int ping(const Context& ctx, const std::string& target, int count, int size) {
  auto client = connect_agent(ctx);
  if (!client) {
    std::cerr << "ferry: " << client.error().message << "\n";
    return 1;
  }
  auto r = client.value()->call<dipc::wire::PingPort, dipc::wire::PingPortReply>(
      [&](dipc::wire::PingPort::Builder b) {
        b.setTarget(target);
        b.setCount(uint32_t(count));
        b.setPayloadBytes(uint32_t(size));
      },
      std::chrono::milliseconds(5000 + 3000 * count));
  if (!r) {
    std::cerr << "ferry: ping " << target << ": " << r.error().message << "\n";
    return 1;
  }
  auto reply = r.value().get();
  std::vector<double> rtt;
  for (double v : reply.getRttUs()) rtt.push_back(v);
  std::sort(rtt.begin(), rtt.end());
  double p50 = rtt.empty() ? 0 : rtt[rtt.size() / 2];
  if (ctx.json) {
    std::cout << nlohmann::json{{"target", target},  {"sent", reply.getSent()}, {"answered", reply.getAnswered()},
                                {"rtt_us_p50", p50}, {"rtt_us", rtt},          {"error", reply.getLastError().cStr()}}
                     .dump()
              << "\n";
  } else {
    std::cout << fmt::format("{}: {} of {} answered, round trip p50 {:.1f} us, min {:.1f} us, max {:.1f} us\n", target,
                             reply.getAnswered(), reply.getSent(), p50, rtt.empty() ? 0.0 : rtt.front(),
                             rtt.empty() ? 0.0 : rtt.back());
    if (reply.getAnswered() < reply.getSent()) std::cout << "last error: " << reply.getLastError().cStr() << "\n";
  }
  return reply.getAnswered() == reply.getSent() ? 0 : 1;
}

}  // namespace ferry::cli
