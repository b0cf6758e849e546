// `ferry migrate GPID --to NODE [--eager | --precopy[=ROUNDS]] [--wait] [--json]`: moves a running
// job to another node and says how long it stood still and what follows lazily. With --wait it
// then follows the destination pager's import of the job's memory until the last page arrived
// (exit 0) or the import failed (exit 1). An eager or precopy migration moves memory before it
// answers: its progress is shown on stderr meanwhile.
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
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

// While an eager or precopy migration of `gpid` is under way: what its pagers say, on one line.
class Progress {
 public:
  Progress(const Context& ctx, uint64_t gpid) : ctx_(ctx), prefix_(fmt::format("gpid {} ", gpid)) {
    thread_ = std::thread([this] { run(); });
  }
  ~Progress() {
    stop_ = true;
    thread_.join();
    if (shown_) std::cerr << "\n";
  }

 private:
  void run() {
    while (!stop_) {
      for (int i = 0; i < 5 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (stop_) return;
      std::string line;
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(ctx_.layout.dir(), ec)) {
        auto c = dipc::LocalClient::connect(e.path() / "pager.sock");
        if (!c) continue;
        auto r = c.value()->call<xmm::wire::PagerStat, xmm::wire::PagerStatReply>([](auto) {}, std::chrono::seconds(1));
        if (!r) continue;
        for (auto p : r.value().get().getPrecopies())
          if (std::string_view(p.getLabel().cStr()).starts_with(prefix_) && std::string_view(p.getState().cStr()) == "copying")
            line = fmt::format("precopy round {}: {} MiB sent, {} MiB staged, {} pages written again last round",
                               p.getRound(), p.getBytesSent() >> 20, (p.getStagedPages() * 4096) >> 20,
                               p.getLastDirtyPages());
        for (auto s : r.value().get().getImports())
          if (std::string_view(s.getLabel().cStr()).starts_with(prefix_) && std::string_view(s.getState().cStr()) == "fetching")
            line = fmt::format("pages arrived {} of {} ({} MiB/s)", s.getArrivedPages(), s.getPresentPages(),
                               s.getElapsedMs() > 0 ? uint64_t(double(s.getBytesOnWire()) / (1 << 20) / (s.getElapsedMs() / 1000)) : 0);
      }
      if (line.empty()) continue;
      std::cerr << "\r " << line << "    " << std::flush;
      shown_ = true;
    }
  }

  const Context& ctx_;
  std::string prefix_;
  std::atomic<bool> stop_{false};
  bool shown_ = false;
  std::thread thread_;
};

const char* mode_name(pm::wire::MigrationMode m) {
  return m == pm::wire::MigrationMode::EAGER ? "eager" : m == pm::wire::MigrationMode::PRECOPY ? "precopy" : "lazy";
}

}  // namespace

int migrate(const Context& ctx, uint64_t gpid, const std::string& to, bool wait, MigrateMode mode, uint32_t rounds) {
  auto client = connect_agent(ctx);
  if (!client) return fail(client.error().message);
  auto wmode = mode == MigrateMode::kEager     ? pm::wire::MigrationMode::EAGER
               : mode == MigrateMode::kPrecopy ? pm::wire::MigrationMode::PRECOPY
                                               : pm::wire::MigrationMode::LAZY;
  std::optional<Progress> progress;
  if (mode != MigrateMode::kLazy && !ctx.json) progress.emplace(ctx, gpid);
  auto r = client.value()->call<pm::wire::MigrateProcess, pm::wire::MigrateReply>(
      [&](pm::wire::MigrateProcess::Builder b) {
        b.setGpid(gpid);
        b.setTo(to);
        b.setMode(wmode);
        b.setPrecopyRounds(rounds);
      },
      mode == MigrateMode::kLazy ? std::chrono::seconds(60) : std::chrono::seconds(3600));
  progress.reset();
  if (!r) return fail(r.error().message);
  auto m = r.value().get();
  if (ctx.json) {
    nlohmann::json j{{"gpid", gpid},
                     {"migration_id", m.getMigrationId().cStr()},
                     {"from", m.getFrom().cStr()},
                     {"to", m.getTo().cStr()},
                     {"pid", m.getPid()},
                     {"mode", mode_name(m.getMode())},
                     {"freeze_to_resume_ms", m.getFreezeToResumeMs()},
                     {"capture_ms", m.getCaptureMs()},
                     {"install_ms", m.getInstallMs()},
                     {"commit_ms", m.getCommitMs()},
                     {"present_pages", m.getPresentPages()},
                     {"eager_bytes", m.getEagerBytes()},
                     {"image_bytes", m.getImageBytes()},
                     {"precopy_rounds", m.getPrecopyRounds()},
                     {"precopy_pages_sent", m.getPrecopyPagesSent()},
                     {"dirty_pages_at_freeze", m.getDirtyPagesAtFreeze()},
                     {"precopy_staged_pages", m.getPrecopyStagedPages()},
                     {"pages_before_resume", m.getPagesBeforeResume()}};
    std::cout << j.dump() << std::endl;
  } else if (m.getMode() == pm::wire::MigrationMode::EAGER) {
    std::cout << fmt::format(
        "gpid {}: {} -> {} (migration {}, eager): stood still {:.1f} ms (capture {:.1f} ms, install and all {} pages "
        "{:.1f} ms, commit {:.1f} ms); nothing follows, the source is no longer needed\n",
        gpid, m.getFrom().cStr(), m.getTo().cStr(), m.getMigrationId().cStr(), m.getFreezeToResumeMs(), m.getCaptureMs(),
        m.getPagesBeforeResume(), m.getInstallMs(), m.getCommitMs());
  } else {
    std::string precopy;
    if (m.getMode() == pm::wire::MigrationMode::PRECOPY)
      precopy = fmt::format(" after a precopy of {} rounds ({} pages sent while it ran; {} there as they were at the "
                            "freeze)", m.getPrecopyRounds(), m.getPrecopyPagesSent(), m.getPrecopyStagedPages());
    std::cout << fmt::format(
        "gpid {}: {} -> {} (migration {}): stood still {:.1f} ms (capture {:.1f} ms, install {:.1f} ms, commit {:.1f} "
        "ms){}; {} pages with data, those not sent ahead follow lazily; {} KiB sent with the state\n",
        gpid, m.getFrom().cStr(), m.getTo().cStr(), m.getMigrationId().cStr(), m.getFreezeToResumeMs(),
        m.getCaptureMs(), m.getInstallMs(), m.getCommitMs(), precopy, m.getPresentPages(), (m.getEagerBytes() + 1023) / 1024);
  }
  std::cout.flush();
  if (!wait) return 0;
  std::string dest = m.getTo().size() > 0 ? m.getTo().cStr() : to;
  return follow_import(ctx, dest, fmt::format("gpid {} migration {}", gpid, m.getMigrationId().cStr()));
}

}  // namespace ferry::cli
