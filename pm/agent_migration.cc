// The agent's two ends of a migration (see agent.h): the source freezes, captures, exports and
// offers; the destination installs, commits at the master and resumes.
#include <capnp/serialize.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <thread>

#include "dipc/local_client.h"
#include "pm/agent.h"
#include "pm/carried_files.h"
#include "pm/offer_payload.h"
#include "pm/carried_files.h"
#include "pm/offer_payload.h"
#include "pm/job_namespace.h"
#include "pm/capture.h"
#include "pm/pm.capnp.h"
#include "pm/restore.h"
#include "xmm/xmm.capnp.h"

namespace ferry::pm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kUffdFeatures = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
                                   UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_THREAD_ID |
                                   UFFD_FEATURE_MISSING_SHMEM;  // MAP_SHARED memory is served lazily too
constexpr auto kOfferTimeout = std::chrono::seconds(5);  // an install takes tens of ms; a silent destination is asked about at the master after this
// A job whose pages still arrive from its previous node moves once they have: waited for this
// long at most, then refused (under the CLI's 60 s for a lazy migration, with the offer's time).
constexpr auto kPagesArrivalWait = std::chrono::seconds(40);

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

uint64_t mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("MemAvailable:", 0) == 0) return std::stoull(line.substr(13)) * 1024;
  return 0;
}

// A blocking request to this node's pager over its control socket. Short: the agent's loop
// (and its heartbeats) waits meanwhile.
template <class Req, class Rep>
Result<dipc::Message<Rep>> ask_pager(const std::filesystem::path& socket, const std::function<void(typename Req::Builder)>& fill) {
  auto c = dipc::LocalClient::connect(socket);
  if (!c) return c.error();
  return c.value()->template call<Req, Rep>(fill, std::chrono::seconds(2));
}

}  // namespace

constexpr int kForwardAttempts = 20;  // 500 ms apart

struct Agent::Installed {
  std::shared_ptr<dipc::Request> req;
  std::shared_ptr<RestoredProcess> proc;
  UniqueFd uffd;
  uint64_t gpid = 0;
  uint32_t uid = 0;
  std::string id, label, from;
  double install_ms = 0;
  Clock::time_point t_commit;
  bool eager = false;
  uint64_t pages_before_resume = 0;
  uint64_t stage_id = 0;
  std::string stage_token;
};

struct Agent::Migration {
  std::string id, to;
  uint64_t gpid = 0;
  std::shared_ptr<dipc::Request> req;
  std::unique_ptr<FrozenProcess> frozen;
  capnp::MallocMessageBuilder message;
  uint64_t object_id = 0;
  std::string token;
  Clock::time_point t0 = Clock::now();
  double capture_ms = 0;
  uint64_t present = 0, eager_bytes = 0, image_bytes = 0;
  double install_ms = 0, commit_ms = 0;
  uint32_t new_pid = 0;
  bool settled = false;  // end_migration ran
  MigrationPlan plan;
  uint32_t precopy_rounds = 0;
  uint64_t precopy_pages_sent = 0, dirty_at_freeze = 0, staged_pages = 0, pages_before_resume = 0;
};

wire::MigrationMode to_wire(MigrationPlan::Mode m) {
  return m == MigrationPlan::Mode::kEager     ? wire::MigrationMode::EAGER
         : m == MigrationPlan::Mode::kPrecopy ? wire::MigrationMode::PRECOPY
                                              : wire::MigrationMode::LAZY;
}

const char* mode_name(MigrationPlan::Mode m) {
  return m == MigrationPlan::Mode::kEager ? "eager" : m == MigrationPlan::Mode::kPrecopy ? "precopy" : "lazy";
}

// How long a caller waits for a migration: a lazy one takes well under a second, once the
// job's pages from its last move have arrived (kPagesArrivalWait); an eager one moves all the
// memory before answering, a precopy copies it while the job runs first.
std::chrono::milliseconds migrate_timeout(wire::MigrationMode mode) {
  return mode == wire::MigrationMode::LAZY
             ? std::chrono::duration_cast<std::chrono::milliseconds>(kPagesArrivalWait + kOfferTimeout * 2)
             : std::chrono::milliseconds(std::chrono::hours(1));
}

// Whether `to` is a node of the cluster that is alive, from the master's node list.
static Status destination_usable(const Result<dipc::Message<wire::NodeList>>& nodes, const std::string& to) {
  if (!nodes) return make_error(ErrorCode::kUnavailable, "the master is unreachable (" + nodes.error().message + ")");
  std::string known;
  for (auto n : nodes.value().get().getNodes()) {
    known += (known.empty() ? "" : ", ") + std::string(n.getName().cStr());
    if (n.getName() != to) continue;
    if (n.getState() == wire::NodeState::DEAD)
      return make_error(ErrorCode::kUnavailable, "node " + to + " is dead (no heartbeat for " +
                                                     std::to_string(n.getHeartbeatAgeMs()) + " ms)");
    return Status::Ok();
  }
  return make_error(ErrorCode::kNotFound, "there is no node " + to + " in the cluster (nodes: " + known + ")");
}

void Agent::migrate(dipc::Request& req) {
  auto r = req.body<wire::MigrateProcess>();
  uint64_t gpid = r.getGpid();
  std::string to = r.getTo();
  wire::MigrationMode wmode = r.getMode();
  MigrationPlan plan;
  plan.mode = wmode == wire::MigrationMode::EAGER     ? MigrationPlan::Mode::kEager
              : wmode == wire::MigrationMode::PRECOPY ? MigrationPlan::Mode::kPrecopy
                                                      : MigrationPlan::Mode::kLazy;
  plan.precopy_rounds = std::clamp<uint32_t>(r.getPrecopyRounds(), 1, 64);
  with_process(req, gpid, [this, gpid, to, plan, wmode](std::shared_ptr<dipc::Request> held, const std::string& node, uint32_t) {
    if (node == to) return held->fail(ErrorCode::kInvalid, "gpid " + std::to_string(gpid) + " is already on " + to);
    auto it = jobs_.find(gpid);
    if (it == jobs_.end()) {
      if (node == options_.node) return held->fail(ErrorCode::kNotFound, "gpid " + std::to_string(gpid) + " is not on " + node);
      // The job is elsewhere: its agent migrates it.
      port_.call<wire::MigrateProcess, wire::MigrateReply>(
          "agent@" + node,
          [&](wire::MigrateProcess::Builder b) {
            b.setGpid(gpid);
            b.setTo(to);
            b.setMode(wmode);
            b.setPrecopyRounds(plan.precopy_rounds);
          },
          [held](Result<dipc::Message<wire::MigrateReply>> rep) {
            if (!rep) return held->fail(rep.error());
            held->relay(rep.value().inbound());
          },
          dipc::CallOptions{migrate_timeout(wmode), held->caller().uid});
      return;
    }
    if (it->second.moving) return held->fail(ErrorCode::kRefused, "gpid " + std::to_string(gpid) + " is migrating already");
    it->second.moving = true;
    // A destination that is not there is refused before anything is frozen.
    port_.call<wire::ListNodes, wire::NodeList>("master", [](auto) {}, [this, held, gpid, to, plan](Result<dipc::Message<wire::NodeList>> nodes) {
      auto it = jobs_.find(gpid);
      if (it == jobs_.end()) return held->fail(ErrorCode::kNotFound, "gpid " + std::to_string(gpid) + " ended before it could migrate");
      Status usable = destination_usable(nodes, to);
      if (!usable) {
        it->second.moving = false;
        return held->fail(usable.error().code, "gpid " + std::to_string(gpid) + " cannot migrate: " + usable.error().message +
                                                   "; it continues on " + options_.node);
      }
      if (!it->second.import_label.empty())
        spdlog::info("{}: gpid {}: its pages still arrive from its previous node; it moves to {} once they have (at most {} s)",
                     port_.name(), gpid, to, kPagesArrivalWait.count());
      when_pages_arrived(gpid, Clock::now() + kPagesArrivalWait, [this, held, gpid, to, plan](Status ready) {
      auto it = jobs_.find(gpid);
      if (it == jobs_.end()) return held->fail(ErrorCode::kNotFound, "gpid " + std::to_string(gpid) + " ended before it could migrate");
      if (!ready) {
        it->second.moving = false;
        return held->fail(ready.error());
      }
      if (plan.mode == MigrationPlan::Mode::kPrecopy) return start_precopy(held, it->second, to, plan);
      start_migration(held, it->second, to, plan);
      });
    });
  });
}

void Agent::when_pages_arrived(uint64_t gpid, Clock::time_point deadline, std::function<void(Status)> then) {
  auto it = jobs_.find(gpid);
  if (it == jobs_.end() || it->second.import_label.empty()) return then(Status::Ok());
  ask_import_states([this, gpid, deadline, then](Result<ImportStates> r) {
    auto it = jobs_.find(gpid);
    if (it == jobs_.end() || it->second.import_label.empty()) return then(Status::Ok());
    Job& job = it->second;
    std::string state;
    if (r)
      if (auto s = r.value().find(job.import_label); s != r.value().end()) state = s->second;
    if (state.rfind("failed: ", 0) == 0) {
      if (job.lost_reason.empty()) job.lost_reason = state.substr(8);  // the pager killed it
      return then(make_error(ErrorCode::kNotFound, "gpid " + std::to_string(gpid) + " is lost: " + job.lost_reason));
    }
    if (r && state != "fetching" && state != "opening") {
      job.import_label.clear();  // complete (or ended): nothing of it is left at the previous node
      job.uffd.reset();
      return then(Status::Ok());
    }
    if (Clock::now() > deadline)
      return then(make_error(ErrorCode::kRefused, "gpid " + std::to_string(gpid) +
                                                      "'s pages are still arriving from its previous node; try again later"));
    port_.loop().after(std::chrono::milliseconds(20), [this, gpid, deadline, then] { when_pages_arrived(gpid, deadline, then); });
  });
}

void Agent::start_migration(std::shared_ptr<dipc::Request> req, Job& job, const std::string& to, MigrationPlan plan) {
  auto m = std::make_shared<Migration>();
  m->id = "m" + std::to_string(next_migration_++) + "@" + options_.node + "." + incarnation_;
  m->to = to;
  m->gpid = job.gpid;
  m->req = req;
  m->plan = plan;
  std::string label = "gpid " + std::to_string(job.gpid) + " migration " + m->id;
  std::string stage_token;
  uint64_t stage_id = 0;
  auto refuse = [&](ErrorCode code, const std::string& why) {
    job.migrating = false;
    job.moving = false;
    m->frozen.reset();  // resumes it where it stopped
    if (plan.precopy_id) end_precopy(plan.precopy_id, false, "migration refused: " + why);
    spdlog::info("{}: {} to {} refused: {}", port_.name(), label, to, why);
    req->fail(code, "gpid " + std::to_string(job.gpid) + " cannot migrate: " + why);
  };
  // Step 1: freeze. From here on signals for it are queued (those held for its last move's
  // forwards first: they go with it).
  job.migrating = true;
  if (!job.awaiting_forwards.empty()) forwards_done(job.gpid, job.awaiting_forwards, "it migrates again");
  auto frozen = FrozenProcess::freeze(job.pid);
  if (!frozen) return refuse(frozen.error().code, frozen.error().message);
  m->frozen = std::move(frozen).value();
  if (auto f = port_.faults().take("freeze"); f && f->action == dipc::FaultAction::kCrash)
    dipc::FaultPlan::crash(port_.name(), "freeze");
  else if (f)
    std::this_thread::sleep_for(f->delay);  // the job stays frozen that much longer
  double freeze_ms = ms_since(m->t0);
  if (plan.precopy_id) {
    // The last look at what the job wrote since its pages were copied: those follow lazily.
    auto st = ask_pager<xmm::wire::FinishPrecopy, xmm::wire::PrecopyStatus>(pager_socket(),
                                                                              [&](auto b) { b.setPrecopyId(plan.precopy_id); });
    if (!st) return refuse(st.error().code, "its precopy cannot finish: " + st.error().message);
    auto p = st.value().get();
    m->precopy_rounds = p.getRound();
    m->precopy_pages_sent = p.getPagesSent();
    m->dirty_at_freeze = p.getDirtyAtFinish();
    m->staged_pages = p.getStagedPages();
    stage_id = p.getStageId();
    stage_token.assign(reinterpret_cast<const char*>(p.getStageToken().begin()), p.getStageToken().size());
  }
  // Step 2: capture and export.
  auto image = m->message.initRoot<wire::ProcessImage>();
  // Which of its anonymous pages hold data the pager learns after the freeze (capture.h).
  if (Status s = m->frozen->capture(image, CaptureOptions{.lazy_presence = false}); !s)
    return refuse(s.error().code, s.error().message);
  double state_ms = ms_since(m->t0);
  auto reader = image.asReader();
  m->present = reader.getResidentAnonBytes() / kPage;  // the pager counts them exactly after
  auto ranges = ranges_to_serve(reader);
  // Sent with the state: what cannot be registered (written pages of private file mappings),
  // the pages the restore itself writes, and the carried files. The rest follows through the
  // pager.
  auto payload = std::make_shared<OfferPayload>();
  auto keep = [&](uint64_t at, std::span<const std::byte> bytes) {
    payload->eager.push_back({at, std::vector<std::byte>(bytes.begin(), bytes.end())});
    m->eager_bytes += bytes.size();
    return Status::Ok();
  };
  Status read = m->frozen->read_eager_pages(reader, keep);
  if (read)
    read = read_carried(m->frozen->tracee().pid(), reader, [&](uint32_t file, uint64_t offset, std::span<const std::byte> bytes) {
      payload->carried.push_back({file, offset, std::vector<std::byte>(bytes.begin(), bytes.end())});
      m->eager_bytes += bytes.size();
      return Status::Ok();
    });
  if (!read) return refuse(read.error().code, read.error().message);
  double eager_ms = ms_since(m->t0);
  auto words = capnp::messageToFlatArray(m->message);
  m->image_bytes = words.asBytes().size();
  auto exported = ask_pager<xmm::wire::ExportMemory, xmm::wire::ExportReply>(pager_socket(), [&](auto b) {
    b.setPid(uint32_t(m->frozen->tracee().pid()));  // the leader, or the thread that stands in for an exited one
    auto rs = b.initRanges(uint32_t(ranges.size()));
    for (size_t i = 0; i < ranges.size(); ++i) {
      rs[uint32_t(i)].setStart(ranges[i].start);
      rs[uint32_t(i)].setEnd(ranges[i].end);
    }
    b.setLabel(label);
    b.setAdopt(false);
    b.setPrecopyId(plan.precopy_id);
  });
  if (!exported) return refuse(exported.error().code, "the local pager cannot export its memory: " + exported.error().message);
  auto cap = exported.value().get().getCapability();
  m->object_id = cap.getObjectId();
  m->token.assign(reinterpret_cast<const char*>(cap.getToken().begin()), cap.getToken().size());
  m->capture_ms = ms_since(m->t0);
  spdlog::info("{}: {}: frozen pid {} and captured in {:.1f} ms (freeze {:.1f}, state {:.1f}, eager pages {:.1f}, "
               "export {:.1f}; {} image bytes, {} eager bytes, {} pages to follow{}); offering to {} ({})",
               port_.name(), label, job.pid, m->capture_ms, freeze_ms, state_ms - freeze_ms, eager_ms - state_ms,
               m->capture_ms - eager_ms, m->image_bytes, m->eager_bytes, m->present,
               plan.precopy_id ? ", " + std::to_string(m->staged_pages) + " of them staged there already" : std::string(),
               to, mode_name(plan.mode));
  // An eager destination answers once every page has arrived: give it the time to move them.
  auto offer_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kOfferTimeout);
  if (plan.mode == MigrationPlan::Mode::kEager)
    offer_timeout += std::chrono::milliseconds(m->present * kPage / (32u << 20) * 1000);  // at 32 MiB/s at worst
  // Step 2, offer; steps 3-4 happen at the destination. A payload too large for the Offer goes
  // ahead of it in parts (pm/offer_payload.h).
  std::string pager_name = cap.getPager();
  auto words_held = std::make_shared<kj::Array<capnp::word>>(std::move(words));
  std::vector<OfferPayload> parts;
  if (m->image_bytes + payload->bytes() > kInlinePayloadBytes) parts = payload->split(kInlinePayloadBytes);
  uint32_t part_count = uint32_t(parts.size());
  offer_timeout += std::chrono::milliseconds(m->eager_bytes / (32u << 20) * 1000);  // at 32 MiB/s at worst
  uint64_t gpid = job.gpid;
  uint32_t uid = job.uid;
  auto send_offer = [this, m, to, payload, words_held, ranges, pager_name, stage_id, stage_token, part_count, gpid, uid,
                     offer_timeout, plan] {
  auto& words = *words_held;
  port_.call<wire::Offer, wire::OfferReply>(
      "agent@" + to,
      [&](wire::Offer::Builder b) {
        b.setMigrationId(m->id);
        b.setGpid(gpid);
        b.setUid(uid);
        auto bytes = words.asBytes();
        b.setImage(capnp::Data::Reader(bytes.begin(), bytes.size()));
        payload->write(b);  // empty when it went in parts
        b.setParts(part_count);
        b.setObjectId(m->object_id);
        b.setToken(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(m->token.data()), m->token.size()));
        b.setPager(pager_name);
        auto rs = b.initRanges(uint32_t(ranges.size()));
        for (size_t i = 0; i < ranges.size(); ++i) {
          rs[uint32_t(i)].setStart(ranges[i].start);
          rs[uint32_t(i)].setEnd(ranges[i].end);
        }
        b.setFrom(options_.node);
        b.setMode(to_wire(plan.mode));
        b.setStageId(stage_id);
        b.setStageToken(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(stage_token.data()), stage_token.size()));
        b.setStagedPages(m->staged_pages);
      },
      [this, m](Result<dipc::Message<wire::OfferReply>> rep) {
        if (m->settled) return;
        if (rep) {
          m->new_pid = rep.value().get().getPid();
          m->install_ms = rep.value().get().getInstallMs();
          m->commit_ms = rep.value().get().getCommitMs();
          m->pages_before_resume = rep.value().get().getPagesBeforeResume();
          return end_migration(m, Status::Ok());
        }
        // Whatever the destination said (or did not), the master's commit point decides: a
        // refusal may race with a commit (a duplicated offer, a lost commit reply).
        settle_unknown(m, rep.error());
      },
      dipc::CallOptions{offer_timeout, std::nullopt});
  };
  watch_destination(m);
  if (parts.empty()) return send_offer();
  send_offer_parts(m, std::move(parts), offer_timeout, send_offer);
}

// All at once; the Offer once every one is acknowledged. A part that fails leaves the Offer
// unsent: the master's commit point still decides (settle_unknown), and it cannot have
// committed.
void Agent::send_offer_parts(std::shared_ptr<Migration> m, std::vector<OfferPayload> parts,
                             std::chrono::milliseconds timeout, std::function<void()> then) {
  auto left = std::make_shared<size_t>(parts.size());
  auto failed = std::make_shared<bool>(false);
  uint64_t bytes = 0;
  for (const auto& p : parts) bytes += p.bytes();
  spdlog::info("{}: gpid {} migration {}: {} bytes of pages and carried files go ahead of the offer in {} parts",
               port_.name(), m->gpid, m->id, bytes, parts.size());
  for (uint32_t i = 0; i < parts.size(); ++i) {
    port_.call<wire::OfferPart, dipc::wire::Empty>(
        "agent@" + m->to,
        [&](wire::OfferPart::Builder b) {
          b.setMigrationId(m->id);
          b.setIndex(i);
          parts[i].write(b);
        },
        [this, m, left, failed, then](Result<dipc::Message<dipc::wire::Empty>> r) {
          if (m->settled || *failed) return;
          if (!r) {
            *failed = true;
            return settle_unknown(m, make_error(r.error().code, "sending its pages ahead of the offer: " + r.error().message));
          }
          if (--*left == 0) then();
        },
        dipc::CallOptions{timeout, std::nullopt});
  }
}

// While the offer is out, a destination that the master declares dead need not be waited for.
void Agent::watch_destination(std::shared_ptr<Migration> m) {
  port_.loop().after(std::chrono::milliseconds(500), [this, m] {
    if (m->settled) return;
    port_.call<wire::ListNodes, wire::NodeList>(
        "master", [](auto) {},
        [this, m](Result<dipc::Message<wire::NodeList>> r) {
          if (m->settled) return;
          if (r)
            for (auto n : r.value().get().getNodes())
              if (std::string(n.getName()) == m->to && n.getState() == wire::NodeState::DEAD)
                return settle_unknown(m, make_error(ErrorCode::kUnreachable, "node " + m->to + " died during the migration"));
          watch_destination(m);
        });
  });
}

// The destination went quiet: whether it committed, only the master knows. Cancelling there
// decides it; until the master answers, the job stays frozen (resuming it could make two).
void Agent::settle_unknown(std::shared_ptr<Migration> m, Error e) {
  if (m->settled) return;
  port_.call<wire::CancelMigration, wire::CancelReply>(
      "master",
      [&](wire::CancelMigration::Builder b) {
        b.setGpid(m->gpid);
        b.setMigrationId(m->id);
      },
      [this, m, e](Result<dipc::Message<wire::CancelReply>> c) {
        if (m->settled) return;
        if (!c) {
          spdlog::warn("{}: migration {}: the master cannot say whether it committed ({}); the job stays frozen, asking again",
                       port_.name(), m->id, c.error().message);
          port_.loop().after(std::chrono::milliseconds(500), [this, m, e] { settle_unknown(m, e); });
          return;
        }
        end_migration(m, c.value().get().getCommitted() ? Status::Ok() : Status(e));
      });
}

// In order, one at a time; a signal whose forwarding timed out is sent again with the same id
// (the destination delivers an id once), for as long as the destination may come back.
// After the last one, signal 0 with the id "<migration>/end" tells the destination that its
// queue is through: signals sent to the job directly meanwhile were held there until then.
void Agent::forward_signals(const std::string& to, uint64_t gpid, const std::string& migration,
                            std::shared_ptr<std::deque<int>> signals, size_t next, int attempt) {
  if (next > signals->size()) return;
  int sig = next < signals->size() ? (*signals)[next] : 0;
  std::string id = migration + "/" + (next < signals->size() ? std::to_string(next) : std::string("end"));
  port_.call<wire::SignalProcess, dipc::wire::Empty>(
      "agent@" + to,
      [&](wire::SignalProcess::Builder b) {
        b.setGpid(gpid);
        b.setSignal(sig);
        b.setForwardId(id);
      },
      [this, to, gpid, migration, signals, next, attempt, sig, id](Result<dipc::Message<dipc::wire::Empty>> r) {
        if (r) return forward_signals(to, gpid, migration, signals, next + 1, 0);
        bool again = (r.error().code == ErrorCode::kTimeout || r.error().code == ErrorCode::kUnreachable ||
                      r.error().code == ErrorCode::kUnknownPort) &&
                     attempt < kForwardAttempts;
        if (!again) {
          spdlog::error("{}: gpid {}: forwarding signal {} ({}) to {} failed: {}", port_.name(), gpid, sig, id, to,
                        r.error().message);
          return forward_signals(to, gpid, migration, signals, next + 1, 0);
        }
        spdlog::warn("{}: gpid {}: forwarding signal {} ({}) to {}: {}; sending it again", port_.name(), gpid, sig, id, to,
                     r.error().message);
        port_.loop().after(std::chrono::milliseconds(500), [this, to, gpid, migration, signals, next, attempt] {
          forward_signals(to, gpid, migration, signals, next, attempt + 1);
        });
      });
}

void Agent::end_migration(std::shared_ptr<Migration> m, Status outcome) {
  if (m->settled) return;
  m->settled = true;
  auto it = jobs_.find(m->gpid);
  if (it == jobs_.end()) return m->req->fail(ErrorCode::kInternal, "gpid vanished during its migration");
  Job& job = it->second;
  std::string label = "gpid " + std::to_string(m->gpid) + " migration " + m->id;
  auto token_data = capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(m->token.data()), m->token.size());
  if (!outcome) {
    // Abort: the memory object is forgotten, the job resumes here, queued signals land here.
    (void)ask_pager<xmm::wire::ReleaseObject, dipc::wire::Empty>(pager_socket(), [&](auto b) {
      b.setObjectId(m->object_id);
      b.setToken(token_data);
      b.setReason("migration aborted");
    });
    m->frozen.reset();
    job.migrating = false;
    job.moving = false;
    if (m->plan.precopy_id) end_precopy(m->plan.precopy_id, false, "migration aborted");
    spdlog::info("{}: {} to {} aborted, the job resumes here: {}", port_.name(), label, m->to, outcome.error().message);
    while (!job.queued.empty()) {
      deliver(job, job.queued.front());
      job.queued.pop_front();
    }
    return m->req->fail(outcome.error().code, "migration of gpid " + std::to_string(m->gpid) + " to " + m->to + " failed: " +
                                                  outcome.error().message + "; it continues on " + options_.node);
  }
  // Committed: the job runs at the destination since just before its answer arrived (what
  // follows, handing over the shell, does not keep it waiting).
  double stood = ms_since(m->t0);
  if (m->plan.precopy_id) {
    // What the last look after the freeze found (the export's presence walk has run by now).
    auto st = ask_pager<xmm::wire::QueryPrecopy, xmm::wire::PrecopyStatus>(pager_socket(),
                                                                             [&](auto b) { b.setPrecopyId(m->plan.precopy_id); });
    if (st) {
      m->staged_pages = st.value().get().getStagedPages();
      m->dirty_at_freeze = st.value().get().getDirtyAtFinish();
    }
    end_precopy(m->plan.precopy_id, true, "");
  }
  // The frozen process becomes the pager's memory shell (step 5).
  pid_t shell = job.pid;
  if (Status s = m->frozen->hand_over(); !s)
    spdlog::error("{}: {}: handing the shell over failed: {}", port_.name(), label, s.error().message);
  auto adopted = ask_pager<xmm::wire::AdoptShell, dipc::wire::Empty>(pager_socket(), [&](auto b) {
    b.setObjectId(m->object_id);
    b.setToken(token_data);
  });
  if (!adopted) {
    // Released before we got here (every page arrived while the outcome was being settled, or
    // the import failed): the frozen copy is of no use to anyone.
    spdlog::info("{}: {}: the pager did not adopt the shell ({}); it is not needed, killed", port_.name(), label,
                 adopted.error().message);
    ::kill(shell, SIGKILL);
  }
  shells_.insert(shell);
  std::deque<int> queued = std::move(job.queued);
  uint64_t gpid = m->gpid;
  jobs_.erase(it);
  forward_signals(m->to, gpid, m->id, std::make_shared<std::deque<int>>(queued), 0, 0);
  spdlog::info("{}: {} committed ({}): {} -> {} (pid {}), stood still {:.1f} ms; {} queued signals forwarded", port_.name(),
               label, mode_name(m->plan.mode), options_.node, m->to, m->new_pid, stood, queued.size());
  m->req->reply<wire::MigrateReply>([&](wire::MigrateReply::Builder b) {
    b.setMigrationId(m->id);
    b.setFrom(options_.node);
    b.setTo(m->to);
    b.setPid(m->new_pid);
    b.setFreezeToResumeMs(stood);
    b.setCaptureMs(m->capture_ms);
    b.setInstallMs(m->install_ms);
    b.setCommitMs(m->commit_ms);
    b.setPresentPages(m->present);
    b.setEagerBytes(m->eager_bytes);
    b.setImageBytes(m->image_bytes);
    b.setMode(to_wire(m->plan.mode));
    b.setPrecopyRounds(m->precopy_rounds);
    b.setPrecopyPagesSent(m->precopy_pages_sent);
    b.setDirtyPagesAtFreeze(m->dirty_at_freeze);
    b.setPagesBeforeResume(m->pages_before_resume);
    b.setPrecopyStagedPages(m->staged_pages);
  });
}

void Agent::drop_expired_parts() {
  for (const auto& dropped : held_payloads_.expire(Clock::now()))
    spdlog::warn("{}: migration {}: its parts waited 60 s for an offer that never came; dropped", port_.name(), dropped);
}

void Agent::offer_part(dipc::Request& req) {
  if (req.caller().local || req.from().rfind("agent@", 0) != 0)
    return req.fail(ErrorCode::kUnauthorized, "offers come from agents");
  auto p = req.body<wire::OfferPart>();
  std::string id = p.getMigrationId();
  drop_expired_parts();
  if (offers_seen_.count(id)) return req.fail(ErrorCode::kInvalid, "migration " + id + " was offered here already");
  if (Status s = held_payloads_.add(id, p.getIndex(), OfferPayload::read(p), Clock::now()); !s)
    return req.fail(s.error().code, "part " + std::to_string(p.getIndex()) + " of migration " + id + " on " + options_.node +
                                        ": " + s.error().message);
  req.reply<dipc::wire::Empty>([](auto) {});
}

void Agent::offer(dipc::Request& req) {
  if (req.caller().local || req.from().rfind("agent@", 0) != 0)
    return req.fail(ErrorCode::kUnauthorized, "offers come from agents");
  auto t0 = Clock::now();
  auto o = req.body<wire::Offer>();
  std::string id = o.getMigrationId();
  uint64_t gpid = o.getGpid();
  std::string label = "gpid " + std::to_string(gpid) + " migration " + id;
  if (!offers_seen_.insert(id).second) {
    spdlog::warn("{}: {}: a second copy of its offer, ignored", port_.name(), label);
    return req.discard();
  }
  // The image, in words of its own.
  auto data = o.getImage();
  if (data.size() % sizeof(capnp::word) != 0 || data.size() == 0) return req.fail(ErrorCode::kBadMessage, "offer with a malformed image");
  std::vector<capnp::word> words(data.size() / sizeof(capnp::word));
  std::memcpy(words.data(), data.begin(), data.size());
  capnp::ReaderOptions ro;
  ro.traversalLimitInWords = 1ull << 30;
  std::unique_ptr<capnp::FlatArrayMessageReader> msg;
  try {
    msg = std::make_unique<capnp::FlatArrayMessageReader>(kj::ArrayPtr<const capnp::word>(words.data(), words.size()), ro);
    msg->getRoot<wire::ProcessImage>().totalSize();
  } catch (...) {
    return req.fail(ErrorCode::kBadMessage, "offer with an image that does not decode");
  }
  auto image = msg->getRoot<wire::ProcessImage>();
  uint64_t stage_id = o.getStageId();
  std::string stage_token(reinterpret_cast<const char*>(o.getStageToken().begin()), o.getStageToken().size());
  // Whatever goes wrong from here, a precopy's stage here is of no use any more.
  auto refuse = [&](ErrorCode code, const std::string& why) {
    if (stage_id) drop_stage(stage_id, stage_token, why);
    req.fail(code, why);
  };
  uint64_t need = image.getResidentAnonBytes();
  if (image.getLazyPresence()) {
    need = 0;
    for (auto v : image.getVmas()) need += v.getPresentPages() * kPage;
  }
  need -= std::min(need, o.getStagedPages() * kPage);  // held here already
  uint64_t avail = mem_available_bytes();
  if (need > avail / 10 * 9)
    return refuse(ErrorCode::kRefused, "not enough free memory on " + options_.node + ": the job needs " +
                                           std::to_string(need >> 20) + " MiB more, " + std::to_string(avail >> 20) + " MiB available");
  // Step 3: install, lazily.
  RestoreOptions options;
  options.stdio[0] = options.stdio[1] = options.stdio[2] = -1;
  options.new_session = true;
  options.lazy = true;
  options.uffd_features = kUffdFeatures;
  // A job's own pid namespace is made anew here, and the job gets its pid in it back.
  std::unique_ptr<JobNamespace> ns;
  if (image.getPidInJob() != 0) {
    auto made = JobNamespace::create();
    if (!made) return refuse(made.error().code, "install on " + options_.node + " failed: " + made.error().message);
    ns = std::move(made).value();
    options.job = ns.get();
    options.pid = pid_t(image.getPidInJob());
  }
  // What came with it: in the Offer, or in parts ahead of it (pm/offer_payload.h).
  drop_expired_parts();
  auto payload = held_payloads_.take(id, o.getParts());
  if (!payload) return refuse(ErrorCode::kUnavailable, "install on " + options_.node + " failed: " + payload.error().message);
  payload.value().append(OfferPayload::read(o));
  auto carried = payload.value().carried_contents(image);
  if (!carried) return refuse(carried.error().code, "install on " + options_.node + " failed: " + carried.error().message);
  options.carried = &carried.value();
  const auto& eager = payload.value().eager;
  auto restored = RestoredProcess::build(
      image,
      [&](const PageSink& sink) {
        for (const auto& run : eager)
          if (Status s = sink(run.address, run.bytes); !s) return s;
        return Status::Ok();
      },
      options);
  if (!restored) {
    spdlog::info("{}: {}: install failed: {}", port_.name(), label, restored.error().message);
    return refuse(restored.error().code, "install on " + options_.node + " failed: " + restored.error().message);
  }
  std::shared_ptr<RestoredProcess> proc(std::move(restored).value());
  for (const auto& note : proc->stats().notes) spdlog::warn("{}: {}: {}", port_.name(), label, note);
  if (ns) {
    // From here the init ends with the job (or with this copy, if it is undone); reaped then.
    if (Status s = ns->watch(options.pid); !s) return refuse(s.error().code, "install on " + options_.node + " failed: " + s.error().message);
    shells_.insert(ns->init_pid());
  }
  double restored_ms = ms_since(t0);
  UniqueFd uffd = proc->take_userfault();
  auto imported = ask_pager<xmm::wire::ImportMemory, xmm::wire::ImportReply>(pager_socket(), [&](auto b) {
    auto cap = b.initCapability();
    cap.setObjectId(o.getObjectId());
    cap.setToken(o.getToken());
    cap.setPager(o.getPager());
    b.setHolderPid(uint32_t(::getpid()));
    b.setUffdFd(uffd.get());
    b.setPid(uint32_t(proc->pid()));
    auto rs = b.initRanges(o.getRanges().size());
    for (uint32_t i = 0; i < o.getRanges().size(); ++i) {
      rs[i].setStart(o.getRanges()[i].getStart());
      rs[i].setEnd(o.getRanges()[i].getEnd());
    }
    b.setPrefetch(o.getPrefetch());
    b.setLabel(label);
    b.setStageId(stage_id);
    const auto& lazy = proc->lazy_ranges();
    auto reg = b.initRegistered(uint32_t(lazy.size()));
    for (uint32_t i = 0; i < lazy.size(); ++i) {
      reg[i].setStart(lazy[i].start);
      reg[i].setEnd(lazy[i].end);
    }
  });
  if (!imported)
    return refuse(imported.error().code, "the pager of " + options_.node + " cannot serve its memory: " + imported.error().message);
  double install_ms = ms_since(t0);
  bool stop_and_copy = o.getMode() == wire::MigrationMode::EAGER;
  spdlog::info("{}: {}: installed as pid {} in {:.1f} ms (decode {:.1f}, restore {:.1f} with {} injected system calls, "
               "import {:.1f}); {}", port_.name(), label, proc->pid(), install_ms, restored_ms - proc->stats().build_ms,
               proc->stats().build_ms, proc->stats().injected_syscalls, install_ms - restored_ms,
               stop_and_copy ? "eager: committing once every page has arrived" : "committing");
  auto in = std::make_shared<Installed>();
  in->req = std::make_shared<dipc::Request>(std::move(req));
  in->proc = std::move(proc);
  in->uffd = std::move(uffd);
  in->gpid = gpid;
  in->uid = o.getUid();
  in->id = id;
  in->label = label;
  in->from = o.getFrom();
  in->install_ms = install_ms;
  in->eager = stop_and_copy;
  if (stop_and_copy) {
    // Stop-and-copy: the pager pulls every page (its prefetcher) while the job stands still.
    uint64_t bytes = need + (64u << 20);
    return wait_all_pages(in, Clock::now() + std::chrono::seconds(10) + std::chrono::milliseconds(bytes / (32u << 20) * 1000));
  }
  commit_installed(in);
}

void Agent::wait_all_pages(std::shared_ptr<Installed> in, Clock::time_point deadline) {
  // Asked over the fabric, not the control socket: the pager is busy moving the pages, and the
  // agent's loop (its heartbeats among the rest) must not wait for its answers.
  port_.call<xmm::wire::ImportProgress, xmm::wire::ImportProgressReply>(
      "pager@" + options_.node, [&](auto b) { b.setLabel(in->label); },
      [this, in, deadline](Result<dipc::Message<xmm::wire::ImportProgressReply>> p) {
        std::string state = p ? std::string(p.value().get().getState().cStr()) : "";
        if (state == "complete") {
          in->pages_before_resume = p.value().get().getArrivedPages();
          spdlog::info("{}: {}: every page arrived ({}) before the resume; committing", port_.name(), in->label,
                       in->pages_before_resume);
          return commit_installed(in);
        }
        bool failed = p && (!p.value().get().getFound() || (state != "fetching" && state != "opening"));
        if (failed || Clock::now() > deadline) {
          std::string why = failed ? (state.empty() ? "the import is gone" : state)
                                   : "its pages did not all arrive in time" + (p ? std::string() : " (" + p.error().message + ")");
          spdlog::info("{}: {}: eager transfer failed, the install is undone: {}", port_.name(), in->label, why);
          return in->req->fail(ErrorCode::kUnavailable, "eager transfer to " + options_.node + " failed: " + why);
        }
        port_.loop().after(std::chrono::milliseconds(5), [this, in, deadline] { wait_all_pages(in, deadline); });
      },
      dipc::CallOptions{std::chrono::milliseconds(1000), std::nullopt});
}

// Step 4: commit at the master; only then does it run here.
void Agent::commit_installed(std::shared_ptr<Installed> in) {
  in->t_commit = Clock::now();
  uint64_t gpid = in->gpid;
  const std::string id = in->id;
  port_.call<wire::CommitMigration, dipc::wire::Empty>(
      "master",
      [&](wire::CommitMigration::Builder b) {
        b.setGpid(gpid);
        b.setMigrationId(id);
        b.setFrom(in->from);
        b.setTo(options_.node);
        b.setPid(uint32_t(in->proc->pid()));
      },
      [this, in](Result<dipc::Message<dipc::wire::Empty>> r) {
        if (r) return resume_installed(in, ms_since(in->t_commit));
        if (r.error().code == ErrorCode::kRefused || r.error().code == ErrorCode::kNotFound) {
          spdlog::info("{}: {}: commit refused, the install is undone: {}", port_.name(), in->label, r.error().message);
          return in->req->fail(ErrorCode::kRefused, "the master did not commit: " + r.error().message);
        }
        settle_commit(in, r.error());
      });
}

// The master may have committed without our hearing it: asking it to cancel settles which.
// Until it answers, the installed process stays frozen here (running it could make two).
void Agent::settle_commit(std::shared_ptr<Installed> in, Error e) {
  spdlog::warn("{}: {}: the commit did not answer ({}); asking the master whether it holds", port_.name(), in->label,
               e.message);
  port_.call<wire::CancelMigration, wire::CancelReply>(
      "master",
      [&](wire::CancelMigration::Builder b) {
        b.setGpid(in->gpid);
        b.setMigrationId(in->id);
      },
      [this, in, e](Result<dipc::Message<wire::CancelReply>> c) {
        if (!c) {
          port_.loop().after(std::chrono::milliseconds(500), [this, in, e] { settle_commit(in, e); });
          return;
        }
        if (c.value().get().getCommitted()) return resume_installed(in, ms_since(in->t_commit));
        spdlog::info("{}: {}: the master cancelled it, the install is undone", port_.name(), in->label);
        in->req->fail(ErrorCode::kRefused, "the commit did not answer (" + e.message + ") and the master cancelled it");
      });
}

// Step 5 here: the job runs on this node.
void Agent::resume_installed(std::shared_ptr<Installed> in, double commit_ms) {
  if (auto f = port_.faults().take("resume"); f && f->action == dipc::FaultAction::kCrash)
    dipc::FaultPlan::crash(port_.name(), "resume");
  else if (f)
    std::this_thread::sleep_for(f->delay);
  if (Status s = in->proc->start(); !s) spdlog::error("{}: {}: resume failed: {}", port_.name(), in->label, s.error().message);
  Job& job = jobs_[in->gpid];
  job.gpid = in->gpid;
  job.pid = in->proc->pid();
  job.uid = in->uid;
  job.label = "gpid " + std::to_string(in->gpid);
  job.uffd = std::move(in->uffd);
  job.import_label = in->label;
  job.awaiting_forwards = in->id;  // until the source forwarded what it queued (or 15 s)
  port_.loop().after(std::chrono::seconds(15), [this, gpid = in->gpid, id = in->id] {
    forwards_done(gpid, id, "the source's forwards did not all come within 15 s");
  });
  spdlog::info("{}: {}: committed and resumed as pid {}", port_.name(), in->label, job.pid);
  in->req->reply<wire::OfferReply>([&](wire::OfferReply::Builder b) {
    b.setPid(uint32_t(job.pid));
    b.setInstallMs(in->install_ms);
    b.setCommitMs(commit_ms);
    b.setPagesBeforeResume(in->pages_before_resume);
  });
}

void Agent::drop_stage(uint64_t stage_id, const std::string& token, const std::string& reason) {
  auto r = ask_pager<xmm::wire::DropStage, dipc::wire::Empty>(pager_socket(), [&](auto b) {
    b.setStageId(stage_id);
    b.setToken(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(token.data()), token.size()));
    b.setReason(reason);
  });
  if (!r) spdlog::info("{}: stage {} not dropped here: {}", port_.name(), stage_id, r.error().message);
}

}  // namespace ferry::pm
