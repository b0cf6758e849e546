// The pager's precopy service (see pager.h): StartPrecopy, QueryPrecopy, FinishPrecopy and
// EndPrecopy from the local agent (source side); OpenStage, StagePages and DropStage from the
// source's pager (destination side).
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "xmm/pager.h"

namespace ferry::xmm {
namespace {

constexpr auto kIdleLimit = std::chrono::minutes(1);

std::span<const std::byte> bytes(capnp::Data::Reader d) { return {reinterpret_cast<const std::byte*>(d.begin()), d.size()}; }

bool local_root(dipc::Request& req) {
  if (req.caller().local && req.caller().is_root()) return true;
  req.fail(ErrorCode::kUnauthorized, "only root on this node may start or steer a precopy");
  return false;
}

bool from_pager(dipc::Request& req) {
  if (!req.caller().local && req.from().rfind("pager", 0) == 0) return true;
  req.fail(ErrorCode::kUnauthorized, "stages are opened and filled by pagers");
  return false;
}

uint64_t mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("MemAvailable:", 0) == 0) return std::stoull(line.substr(13)) * 1024;
  return 0;
}

}  // namespace

void Pager::serve_precopy() {
  // ---- Source side ----
  port_.serve<wire::StartPrecopy>([this](dipc::Request& req) {
    if (!local_root(req)) return;
    auto r = req.body<wire::StartPrecopy>();
    pid_t pid = pid_t(r.getPid());
    std::string label = r.getLabel();
    // A thread's pidfd when the job's leader has exited (PIDFD_THREAD, Linux 6.9): its files
    // are the process's.
    UniqueFd pidfd(int(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) pidfd.reset(int(::syscall(SYS_pidfd_open, pid, O_EXCL /* PIDFD_THREAD */)));
    if (!pidfd) return req.fail(ErrorCode::kNotFound, errno_message("precopy of " + label + ": pid " + std::to_string(pid), errno));
    UniqueFd uffd(int(::syscall(SYS_pidfd_getfd, pidfd.get(), r.getUffdFd(), 0)));
    if (!uffd)
      return req.fail(ErrorCode::kInvalid, errno_message("precopy of " + label + ": pidfd_getfd of its userfaultfd", errno));
    std::vector<DirtyTracker::Range> ranges;
    for (auto x : r.getRanges()) ranges.push_back({x.getStart(), x.getEnd()});
    UniqueFd mem(::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
    if (!mem) return req.fail(ErrorCode::kNotFound, errno_message("precopy of " + label + ": open /proc/PID/mem", errno));
    PrecopySpec spec{pid, std::move(ranges), r.getDestination(), std::max<uint32_t>(1, std::min<uint32_t>(r.getRounds(), 64)),
                     label};
    uint64_t id = next_precopy_++;
    precopies_[id] = std::make_unique<Precopy>(id, std::move(spec), std::move(uffd), std::move(mem), port_, *bulk_);
    req.reply<wire::PrecopyReply>([&](wire::PrecopyReply::Builder b) { b.setPrecopyId(id); });
    // The agent lets the process run on once answered; tracking starts right after.
    port_.loop().post([this, id] {
      if (auto it = precopies_.find(id); it != precopies_.end()) it->second->open();
    });
  });

  auto find = [this](dipc::Request& req, uint64_t id) -> Precopy* {
    auto it = precopies_.find(id);
    if (it == precopies_.end()) {
      req.fail(ErrorCode::kNotFound, "no precopy " + std::to_string(id) + " on " + port_.name());
      return nullptr;
    }
    return it->second.get();
  };
  port_.serve<wire::QueryPrecopy>([find](dipc::Request& req) {
    if (!local_root(req)) return;
    Precopy* p = find(req, req.body<wire::QueryPrecopy>().getPrecopyId());
    if (!p) return;
    req.reply<wire::PrecopyStatus>([&](wire::PrecopyStatus::Builder b) { p->status(b); });
  });
  port_.serve<wire::FinishPrecopy>([find](dipc::Request& req) {
    if (!local_root(req)) return;
    Precopy* p = find(req, req.body<wire::FinishPrecopy>().getPrecopyId());
    if (!p) return;
    if (Status s = p->finish(); !s) return req.fail(s.error());
    req.reply<wire::PrecopyStatus>([&](wire::PrecopyStatus::Builder b) { p->status(b); });
  });
  port_.serve<wire::EndPrecopy>([this](dipc::Request& req) {
    if (!local_root(req)) return;
    auto r = req.body<wire::EndPrecopy>();
    auto it = precopies_.find(r.getPrecopyId());
    if (it != precopies_.end()) {
      if (r.getCommitted()) {
        auto o = precopy_objects_.find(it->first);
        if (o != precopy_objects_.end() && !exporter_.presence_ready(o->second)) {
          // The export's presence walk still needs its last look (a large job commits before
          // the walk is through): forgotten once the walk is done (learn_presence).
          committed_precopies_.insert(it->first);
          return req.reply<dipc::wire::Empty>([](dipc::wire::Empty::Builder) {});
        }
        precopy_committed(it->first);
        return req.reply<dipc::wire::Empty>([](dipc::wire::Empty::Builder) {});
      }
      it->second->cancel(r.getReason());
      precopy_objects_.erase(it->first);
      precopies_.erase(it);
    }
    req.reply<dipc::wire::Empty>([](dipc::wire::Empty::Builder) {});
  });

  // ---- Destination side ----
  port_.serve<wire::OpenStage>([this](dipc::Request& req) {
    if (!from_pager(req)) return;
    auto r = req.body<wire::OpenStage>();
    uint64_t avail = mem_available_bytes();
    if (r.getBytes() > avail / 10 * 9)
      return req.fail(ErrorCode::kRefused, "not enough free memory on " + port_.name() + " to stage " +
                                               std::to_string(r.getBytes() >> 20) + " MiB (" + std::to_string(avail >> 20) +
                                               " MiB available)");
    std::vector<Stage::Range> ranges;
    for (auto x : r.getRanges()) ranges.push_back({x.getStart(), x.getEnd()});
    auto stage = Stage::create(std::move(ranges));
    if (!stage) return req.fail(stage.error());
    uint64_t id = next_stage_++;
    StageEntry e;
    e.token.resize(16);
    RAND_bytes(reinterpret_cast<unsigned char*>(e.token.data()), int(e.token.size()));
    e.label = r.getLabel();
    e.source = req.from();
    e.stage = std::move(stage).value();
    e.last_used = std::chrono::steady_clock::now();
    spdlog::info("{}: stage {} opened for {} from {} ({} pages)", port_.name(), id, e.label, e.source, e.stage->total_pages());
    std::string token = e.token;
    stages_[id] = std::move(e);
    req.reply<wire::StageOpened>([&](wire::StageOpened::Builder b) {
      b.setStageId(id);
      b.initToken(uint32_t(token.size()));
      std::memcpy(b.getToken().begin(), token.data(), token.size());
    });
  });
  auto stage_of = [this](dipc::Request& req, uint64_t id, capnp::Data::Reader token) -> StageEntry* {
    auto it = stages_.find(id);
    if (it == stages_.end() || token.size() != it->second.token.size() ||
        CRYPTO_memcmp(token.begin(), it->second.token.data(), token.size()) != 0) {
      req.fail(ErrorCode::kUnauthorized, "stage " + std::to_string(id) + " is unknown here or its token is wrong");
      return nullptr;
    }
    return &it->second;
  };
  bulk_->serve<wire::StagePages>([stage_of](dipc::Request& req) {
    auto r = req.body<wire::StagePages>();
    StageEntry* e = stage_of(req, r.getStageId(), r.getToken());
    if (!e) return;
    e->last_used = std::chrono::steady_clock::now();
    if (Status s = e->stage->put(r.getRound(), r.getAddress(), r.getPages(), bytes(r.getData())); !s) return req.fail(s.error());
    req.reply<dipc::wire::Empty>([](dipc::wire::Empty::Builder) {});
  });
  auto drop = [this, stage_of](dipc::Request& req) {
    auto r = req.body<wire::DropStage>();
    if (!req.caller().local && !from_pager(req)) return;
    if (req.caller().local && !local_root(req)) return;
    StageEntry* e = stage_of(req, r.getStageId(), r.getToken());
    if (!e) return;
    spdlog::info("{}: stage {} of {} dropped: {}", port_.name(), r.getStageId(), e->label, r.getReason().cStr());
    stages_.erase(r.getStageId());
    req.reply<dipc::wire::Empty>([](dipc::wire::Empty::Builder) {});
  };
  port_.serve<wire::DropStage>(drop);
}

void Pager::precopy_committed(uint64_t precopy_id) {
  committed_precopies_.erase(precopy_id);
  auto it = precopies_.find(precopy_id);
  if (it == precopies_.end()) return;
  spdlog::info("{}: precopy {} of {} done: the migration committed", port_.name(), it->first, it->second->label());
  // The shell's write-tracking ends with the shell: unregistering would walk its page tables
  // while its pages are being served.
  if (auto o = precopy_objects_.find(it->first); o != precopy_objects_.end())
    exporter_.keep_until_done(o->second, std::shared_ptr<DirtyTracker>(it->second->release_tracker()));
  precopy_objects_.erase(it->first);
  precopies_.erase(it);
}

std::shared_ptr<Stage> Pager::adopt_stage(uint64_t id, const std::string& label) {
  auto it = stages_.find(id);
  if (it == stages_.end()) return nullptr;
  auto stage = it->second.stage;
  spdlog::info("{}: stage {} ({} pages held) taken by the import of {}", port_.name(), id, stage->held_pages(), label);
  stages_.erase(it);
  return stage;
}

void Pager::forget_idle_precopies() {
  auto now = std::chrono::steady_clock::now();
  for (auto it = stages_.begin(); it != stages_.end();) {
    if (now - it->second.last_used > kIdleLimit) {
      spdlog::info("{}: stage {} of {} dropped: no import took it, and nothing came for it, for a minute", port_.name(),
                   it->first, it->second.label);
      it = stages_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = precopies_.begin(); it != precopies_.end();) {
    if (now - it->second->last_change() > kIdleLimit && it->second->state() != "copying" &&
        !committed_precopies_.count(it->first)) {
      it->second->cancel("nobody asked for it for a minute");
      precopy_objects_.erase(it->first);
      it = precopies_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace ferry::xmm
