// The source agent's side of a precopy migration (see agent.h, "Modes"): before the job is
// frozen, its pager copies the job's memory to the destination's pager while it runs
// (xmm/precopy.h). The job itself must create the userfaultfd that tracks its writes (only its
// own mm can be tracked), so the agent stops it for a moment, makes it call userfaultfd(), lets
// the pager take a copy and closes the job's own descriptor again: the job is left holding
// nothing it did not hold before.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dipc/local_client.h"
#include "pm/agent.h"
#include "pm/proc_info.h"
#include "pm/tracee.h"
#include "xmm/xmm.capnp.h"

namespace ferry::pm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollEvery = std::chrono::milliseconds(20);

template <class Req, class Rep>
Result<dipc::Message<Rep>> ask(const std::filesystem::path& socket, const std::function<void(typename Req::Builder)>& fill) {
  auto c = dipc::LocalClient::connect(socket);
  if (!c) return c.error();
  return c.value()->template call<Req, Rep>(fill, std::chrono::seconds(2));
}

// The memory a precopy copies: the job's private anonymous writable mappings.
std::vector<Vma> copied_mappings(const std::vector<Vma>& maps) {
  std::vector<Vma> out;
  for (const auto& v : maps)
    if (!v.is_file() && !v.is_special() && !v.shared && v.write) out.push_back(v);
  return out;
}

}  // namespace

void Agent::start_precopy(std::shared_ptr<dipc::Request> req, Job& job, const std::string& to, MigrationPlan plan) {
  const uint64_t gpid = job.gpid;
  const std::string label = "gpid " + std::to_string(gpid) + " precopy to " + to;
  auto refuse = [&](ErrorCode code, const std::string& why) {
    job.moving = false;
    spdlog::info("{}: {} refused: {}", port_.name(), label, why);
    req->fail(code, "gpid " + std::to_string(gpid) + " cannot migrate: " + why + "; it continues on " + options_.node);
  };
  const pid_t task = task_with_memory(job.pid);  // its leader, or a live thread if the leader has exited
  auto maps = read_maps(task);
  if (!maps) return refuse(maps.error().code, maps.error().message);
  auto copied = copied_mappings(maps.value());
  if (copied.empty()) return start_migration(req, job, to, plan);  // nothing to copy ahead
  {
    auto tracee = Tracee::seize(task);
    if (!tracee) return refuse(tracee.error().code, "cannot stop it to track its writes: " + tracee.error().message);
    auto site = find_syscall_site(task);
    if (!site) return refuse(site.error().code, site.error().message);
    tracee.value()->set_syscall_site(site.value());
    SameCpu pinned(task);
    auto fd = tracee.value()->syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (!fd || fd.value() < 0)
      return refuse(ErrorCode::kUnavailable, "its writes cannot be tracked: userfaultfd() in the job failed" +
                                                 (fd ? " (errno " + std::to_string(-fd.value()) + ")" : ": " + fd.error().message));
    auto started = ask<xmm::wire::StartPrecopy, xmm::wire::PrecopyReply>(pager_socket(), [&](auto b) {
      b.setPid(uint32_t(task));
      b.setUffdFd(int32_t(fd.value()));
      auto rs = b.initRanges(uint32_t(copied.size()));
      for (size_t i = 0; i < copied.size(); ++i) {
        rs[uint32_t(i)].setStart(copied[i].start);
        rs[uint32_t(i)].setEnd(copied[i].end);
      }
      b.setDestination("pager@" + to);
      b.setRounds(plan.precopy_rounds);
      b.setLabel(label);
    });
    (void)tracee.value()->syscall(SYS_close, uint64_t(fd.value()));  // the pager holds its own copy
    if (!started) return refuse(started.error().code, "the local pager cannot precopy it: " + started.error().message);
    plan.precopy_id = started.value().get().getPrecopyId();
  }  // the job runs on
  uint64_t bytes = 0;
  for (const auto& v : copied) bytes += v.size();
  spdlog::info("{}: {}: precopy {} started over {} mappings ({} MiB), {} rounds at most; the job runs on", port_.name(),
               label, plan.precopy_id, copied.size(), bytes >> 20, plan.precopy_rounds);
  poll_precopy(req, gpid, to, plan);
}

void Agent::poll_precopy(std::shared_ptr<dipc::Request> req, uint64_t gpid, const std::string& to, MigrationPlan plan) {
  port_.loop().after(kPollEvery, [this, req, gpid, to, plan] {
    auto it = jobs_.find(gpid);
    if (it == jobs_.end()) {
      end_precopy(plan.precopy_id, false, "the job ended");
      return req->fail(ErrorCode::kNotFound, "gpid " + std::to_string(gpid) + " ended before it could migrate");
    }
    auto st = ask<xmm::wire::QueryPrecopy, xmm::wire::PrecopyStatus>(pager_socket(),
                                                                       [&](auto b) { b.setPrecopyId(plan.precopy_id); });
    std::string state = st ? std::string(st.value().get().getState().cStr()) : "failed: " + st.error().message;
    if (state == "converged") return start_migration(req, it->second, to, plan);
    if (state != "copying" && state != "opening") {
      it->second.moving = false;
      end_precopy(plan.precopy_id, false, "it failed");
      std::string why = state.rfind("failed: ", 0) == 0 ? state.substr(8) : state;
      spdlog::info("{}: gpid {}: precopy to {} failed, no migration: {}", port_.name(), gpid, to, why);
      return req->fail(ErrorCode::kUnavailable, "gpid " + std::to_string(gpid) + " cannot migrate: its precopy to " + to +
                                                    " failed: " + why + "; it continues on " + options_.node);
    }
    poll_precopy(req, gpid, to, plan);
  });
}

void Agent::end_precopy(uint64_t precopy_id, bool committed, const std::string& reason) {
  auto r = ask<xmm::wire::EndPrecopy, dipc::wire::Empty>(pager_socket(), [&](auto b) {
    b.setPrecopyId(precopy_id);
    b.setCommitted(committed);
    b.setReason(reason);
  });
  if (!r) spdlog::warn("{}: precopy {} not ended at the pager: {}", port_.name(), precopy_id, r.error().message);
}

}  // namespace ferry::pm
