// `ferry migrate GPID --to NODE [--wait]`: moves a running job to another node and says how long
// it stood still and what follows lazily. With --wait it then follows the destination pager's
// import of the job's memory until the last page arrived (exit 0) or the import failed (exit 1).
#include <fmt/format.h>

#include <iostream>
#include <string_view>
#include <thread>

#include "dipc/dipc.capnp.h"
#include "pm/pm.capnp.h"
#include "runtime/cli/agent_connection.h"
#include "xmm/xmm.capnp.h"

namespace ferry::cli {
namespace {

int fail(const std::string& message) {
  std::cerr << "ferry: migrate: " << message << "\n";
  return 1;
}

// Polls the pager of `node` until the import labelled `label` is no longer fetching.
int follow_import(const Context& ctx, const std::string& node, const std::string& label) {
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  std::unique_ptr<dipc::LocalClient> pager;
  int failures = 0;
  for (;; std::this_thread::sleep_for(std::chrono::milliseconds(200))) {
    if (!pager) {
      auto c = dipc::LocalClient::connect(ctx.layout.socket("pager", node));
      if (!c) {
        if (++failures > 5) return fail("pager of " + node + ": " + c.error().message);
        continue;
      }
      pager = std::move(c).value();
    }
    auto r = pager->call<xmm::wire::PagerStat, xmm::wire::PagerStatReply>([](auto) {}, std::chrono::seconds(5));
    if (!r) {
      if (!transient(r.error()) || ++failures > 5) return fail("pager of " + node + ": " + r.error().message);
      if (r.error().code != ErrorCode::kTimeout) pager.reset();  // the connection is gone
      continue;
    }
    failures = 0;
    bool found = false;
    for (auto s : r.value().get().getImports()) {
      if (std::string_view(s.getLabel().cStr()) != label) continue;
      found = true;
      std::string state = s.getState().cStr();
      std::cerr << fmt::format("\r pages arrived {} of {}, {} faults", s.getArrivedPages(), s.getPresentPages(),
                               s.getFaults())
                << std::flush;
      if (state == "fetching" || state == "opening") break;
      std::cerr << "\n";
      if (state != "complete") return fail(fmt::format("{} on {}: {}", label, node, state));
      std::cout << fmt::format("{}: last page arrived on {} after {:.1f} ms\n", label, node, s.getMsToLastPage());
      return 0;
    }
    if (!found && Clock::now() - started > std::chrono::seconds(5))
      return fail(fmt::format("the pager of {} has no import labelled \"{}\" after 5 s", node, label));
  }
}

}  // namespace

int migrate(const Context& ctx, uint64_t gpid, const std::string& to, bool wait) {
  auto client = connect_agent(ctx);
  if (!client) return fail(client.error().message);
  auto r = client.value()->call<pm::wire::MigrateProcess, pm::wire::MigrateReply>(
      [&](pm::wire::MigrateProcess::Builder b) {
        b.setGpid(gpid);
        b.setTo(to);
      },
      std::chrono::seconds(60));
  if (!r) return fail(r.error().message);
  auto m = r.value().get();
  std::cout << fmt::format(
      "gpid {}: {} -> {} (migration {}): stood still {:.1f} ms (capture {:.1f} ms, install {:.1f} ms, commit {:.1f} "
      "ms); {} pages follow lazily, {} KiB sent with the state\n",
      gpid, m.getFrom().cStr(), m.getTo().cStr(), m.getMigrationId().cStr(), m.getFreezeToResumeMs(),
      m.getCaptureMs(), m.getInstallMs(), m.getCommitMs(), m.getPresentPages(), (m.getEagerBytes() + 1023) / 1024);
  std::cout.flush();
  if (!wait) return 0;
  std::string dest = m.getTo().size() > 0 ? m.getTo().cStr() : to;
  return follow_import(ctx, dest, fmt::format("gpid {} migration {}", gpid, m.getMigrationId().cStr()));
}

}  // namespace ferry::cli
