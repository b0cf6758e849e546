#include "xmm/pager.h"

#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace ferry::xmm {
namespace {

std::span<const std::byte> bytes(capnp::Data::Reader d) {
  return {reinterpret_cast<const std::byte*>(d.begin()), d.size()};
}

bool local_root(dipc::Request& req) {
  if (req.caller().local && req.caller().is_root()) return true;
  req.fail(ErrorCode::kUnauthorized, "only root on this node may export or import memory");
  return false;
}

// The descriptor `fd` of process `pid`, copied into ours.
Result<UniqueFd> take_fd(pid_t pid, int fd) {
  UniqueFd pidfd(int(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return make_error(ErrorCode::kNotFound, errno_message("pidfd_open of the uffd holder " + std::to_string(pid), errno));
  UniqueFd mine(int(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!mine)
    return make_error(ErrorCode::kInvalid,
                      errno_message("pidfd_getfd of fd " + std::to_string(fd) + " of pid " + std::to_string(pid), errno));
  return mine;
}

constexpr auto kImporterQuiet = std::chrono::seconds(5);    // then its importer is checked
constexpr auto kWalkAfterOpen = std::chrono::milliseconds(30);  // see open_object
constexpr auto kUnadoptedLimit = std::chrono::seconds(60);  // an export nobody adopts nor asks for

}  // namespace

Pager::Pager(dipc::Port& port, std::unique_ptr<dipc::Port> bulk, std::chrono::milliseconds timeout)
    : port_(port), bulk_(std::move(bulk)), exporter_(port.name()),
      importer_(std::make_unique<Importer>(port, *bulk_, timeout)) {}

Pager::~Pager() {
  port_.loop().cancel(free_timer_);
  port_.loop().cancel(idle_timer_);
  importer_.reset();
}

Result<std::unique_ptr<Pager>> Pager::start(dipc::Port& port, PagerOptions options) {
  options.bulk.fabric.max_message = kPagerMaxMessage;
  options.bulk.fabric.recv_buffers = 16;
  options.bulk.fabric.queue_depth = 1024;  // a 1 MiB reply is 66 fragments, and 8 are in flight
  options.bulk.fabric.completions_per_turn = 1;  // the fault port is polled between any two bulk messages
  auto bulk = dipc::Port::open(options.bulk, port.loop());
  if (!bulk) return bulk.error();
  std::unique_ptr<Pager> p(new Pager(port, std::move(bulk).value(), options.timeout));
  // One plan for both ports: faults are set on this port's control socket.
  p->bulk_->share_faults(port.fault_plan());
  port.fault_point<wire::ImportMemory>("install", dipc::FaultSite::kRequestIn,
                                       "destination pager: asked to serve the job's memory (step 3)");
  port.fault_point<wire::FetchPages>("page-reply", dipc::FaultSite::kReplyOut,
                                     "source pager: its reply to a page fault leaves");
  p->bulk_->fault_point<wire::FetchPages>("prefetch", dipc::FaultSite::kReplyOut,
                                          "source pager: its reply to a prefetch request leaves");
  port.faults().declare({"presence-walk", dipc::FaultSite::kLocal, 0,
                         "source pager: about to walk an export's page tables (delay: its map comes that much later)", ""});
  p->serve();
  return p;
}

void Pager::serve() {
  port_.serve<wire::ExportMemory>([this](dipc::Request& req) {
    if (!local_root(req)) return;
    auto r = req.body<wire::ExportMemory>();
    std::vector<Exporter::Range> ranges;
    for (auto x : r.getRanges()) ranges.push_back({x.getStart(), x.getEnd()});
    Precopy* precopy = nullptr;
    if (r.getPrecopyId() != 0) {
      auto it = precopies_.find(r.getPrecopyId());
      if (it == precopies_.end() || it->second->state() != "finished")
        return req.fail(ErrorCode::kNotFound, "export of " + std::string(r.getLabel().cStr()) + ": precopy " +
                                                  std::to_string(r.getPrecopyId()) + " is not here or not finished");
      precopy = it->second.get();
    }
    auto made = exporter_.export_process(pid_t(r.getPid()), ranges, r.getLabel(), r.getAdopt(), precopy);
    if (!made) return req.fail(made.error());
    // Which pages hold data is learnt by walking the page tables, ~18 ns a page: 38 ms of CPU
    // for 8 GiB. While the job is frozen for a migration (adopt false) that CPU is what the
    // destination needs to install it (2 CPUs here: the walk made 8 GiB downtime 24 ms
    // against 15), so the walk waits for the commit (start_walk). Not after a precopy: its
    // walk takes the last look, and until then the destination cannot use its stage (the
    // job's first faults would fetch staged pages again).
    uint64_t object = made.value().id, precopy_id = r.getPrecopyId();
    if (precopy) precopy_objects_[precopy_id] = object;
    pending_walks_[object] = precopy_id;
    if (r.getAdopt() || precopy) start_walk(object);
    req.reply<wire::ExportReply>([&](wire::ExportReply::Builder b) {
      auto cap = b.initCapability();
      cap.setObjectId(made.value().id);
      cap.setToken(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(made.value().token.data()), made.value().token.size()));
      cap.setPager(port_.name());
      b.setPresentPages(made.value().present_pages);
      b.setTotalPages(made.value().total_pages);
      b.setStagedPages(made.value().staged_pages);
    });
  });

  port_.serve<wire::AdoptShell>([this](dipc::Request& req) {
    if (!local_root(req)) return;
    auto r = req.body<wire::AdoptShell>();
    if (Status s = exporter_.adopt(r.getObjectId(), bytes(r.getToken())); !s) return req.fail(s.error());
    req.reply<dipc::wire::Empty>([](dipc::wire::Empty::Builder) {});
    start_walk(r.getObjectId());  // committed: the job runs at the destination
  });

  port_.serve<wire::ImportMemory>([this](dipc::Request& req) {
    if (!local_root(req)) return;
    auto r = req.body<wire::ImportMemory>();
    if (importer_->serves(pid_t(r.getPid()))) {  // a second copy of the request: the first one answers
      spdlog::warn("{}: ImportMemory for pid {} ({}) again: ignored, it is served already", port_.name(), r.getPid(),
                   r.getLabel().cStr());
      return req.discard();
    }
    auto uffd = take_fd(pid_t(r.getHolderPid()), r.getUffdFd());
    if (!uffd) return req.fail(uffd.error());
    ImportSpec spec;
    auto cap = r.getCapability();
    spec.object_id = cap.getObjectId();
    spec.token.assign(reinterpret_cast<const char*>(cap.getToken().begin()), cap.getToken().size());
    spec.source = cap.getPager();
    spec.pid = pid_t(r.getPid());
    for (auto x : r.getRanges()) spec.ranges.push_back({x.getStart(), x.getEnd()});
    for (auto x : r.getRegistered()) spec.registered.push_back({x.getStart(), x.getEnd()});
    spec.prefetch = r.getPrefetch();
    spec.label = r.getLabel();
    if (r.getStageId() != 0) {
      spec.stage = adopt_stage(r.getStageId(), spec.label);
      if (!spec.stage) spdlog::warn("{}: import of {}: stage {} is not here; every page comes from the source", port_.name(),
                                    spec.label, r.getStageId());
    }
    auto held = std::make_shared<dipc::Request>(std::move(req));
    importer_->start(std::move(spec), std::move(uffd).value(), [held](Result<uint64_t> id) {
      if (!id) return held->fail(id.error());
      held->reply<wire::ImportReply>([&](wire::ImportReply::Builder b) { b.setImportId(id.value()); });
    });
  });

  port_.serve<wire::ImportProgress>([this](dipc::Request& req) {
    std::string label = req.body<wire::ImportProgress>().getLabel();
    req.reply<wire::ImportProgressReply>([&](wire::ImportProgressReply::Builder b) { importer_->progress(label, b); });
  });

  port_.serve<wire::PagerStat>([this](dipc::Request& req) {
    req.reply<wire::PagerStatReply>([&](wire::PagerStatReply::Builder b) {
      b.setNode(port_.name());
      importer_->stat(b.initImports(uint32_t(importer_->size())));
      exporter_.stat(b.initExports(uint32_t(exporter_.size())));
      auto ps = b.initPrecopies(uint32_t(precopies_.size()));
      uint32_t i = 0;
      for (const auto& [id, p] : precopies_) p->status(ps[i++]);
    });
  });

  auto open = [this](dipc::Request& req) { open_object(req); };
  auto fetch = [this](dipc::Request& req) {
    auto r = req.body<wire::FetchPages>();
    exporter_.touch(r.getObjectId(), bytes(r.getToken()), req.from());
    for (auto a : r.getAcked()) exporter_.acknowledge(r.getObjectId(), bytes(r.getToken()), a.getAddress(), a.getPages());
    if (Status s = exporter_.check_fetch(r.getObjectId(), bytes(r.getToken()), r.getAddress(), r.getPages()); !s)
      return req.fail(s.error());
    Status status = Status::Ok();
    req.reply<wire::PageData>([&](wire::PageData::Builder b) {
      status = exporter_.fetch(r.getObjectId(), bytes(r.getToken()), r.getAddress(), r.getPages(), b);
    });
    if (!status) spdlog::warn("{}: fetch from {} refused: {}", port_.name(), req.from(), status.error().message);
  };
  auto release = [this](dipc::Request& req) {
    auto r = req.body<wire::ReleaseObject>();
    if (Status s = exporter_.release(r.getObjectId(), bytes(r.getToken()), r.getReason()); !s) return req.fail(s.error());
    req.reply<dipc::wire::Empty>([](dipc::wire::Empty::Builder) {});
  };
  for (dipc::Port* p : {&port_, bulk_.get()}) {
    p->serve<wire::OpenObject>(open);
    p->serve<wire::FetchPages>(fetch);
    p->serve<wire::ReleaseObject>(release);
  }
  serve_precopy();
  free_timer_ = port_.loop().every(std::chrono::milliseconds(20), [this] { exporter_.free_sent_pages(); });
  // Objects whose importer fell silent: is it still there? (A live importer that just has
  // nothing to ask answers a ping; a dead or restarted one does not know the port any more.)
  idle_timer_ = port_.loop().every(std::chrono::seconds(1), [this] {
    forget_idle_precopies();
    std::erase_if(pending_walks_, [this](const auto& w) { return exporter_.presence_ready(w.first); });  // gone
    for (const auto& o : exporter_.idle(kImporterQuiet, kUnadoptedLimit)) {
      if (o.importer.empty()) {
        exporter_.importer_checked(o.id, "nobody opened it");
        continue;
      }
      port_.call<dipc::wire::Ping, dipc::wire::Pong>(
          o.importer, [](auto) {},
          [this, o](Result<dipc::Message<dipc::wire::Pong>> r) {
            exporter_.importer_checked(o.id, r ? "" : r.error().message);
          });
    }
  });
}

void Pager::start_walk(uint64_t object) {
  auto it = pending_walks_.find(object);
  if (it == pending_walks_.end()) return;
  uint64_t precopy_id = it->second;
  pending_walks_.erase(it);
  auto walk = [this, object, precopy_id] { learn_presence(object, precopy_id); };
  auto f = port_.faults().take("presence-walk");
  if (f && f->action == dipc::FaultAction::kCrash) dipc::FaultPlan::crash(port_.name(), "presence-walk");
  if (f && f->action == dipc::FaultAction::kDelay)
    port_.loop().after(std::chrono::duration_cast<std::chrono::milliseconds>(f->delay), walk);
  else
    port_.loop().post(walk);
}

// One slice of the page-table walk per turn of the loop, then the OpenObjects that waited.
void Pager::learn_presence(uint64_t object, uint64_t precopy_id) {
  constexpr uint64_t kPagesPerStep = 8 * 1024;  // ~0.2 ms
  auto p = precopies_.find(precopy_id);
  auto done = exporter_.learn_presence_step(object, p == precopies_.end() ? nullptr : p->second.get(), kPagesPerStep);
  if (done && !done.value()) {
    port_.loop().post([this, object, precopy_id] { learn_presence(object, precopy_id); });
    return;
  }
  if (committed_precopies_.count(precopy_id)) precopy_committed(precopy_id);  // its last look is taken
  auto held = held_opens_.find(object);
  if (held == held_opens_.end()) return;
  auto waiting = std::move(held->second);
  held_opens_.erase(held);
  for (auto& req : waiting) open_object(*req);
}

void Pager::open_object(dipc::Request& req) {
  auto r = req.body<wire::OpenObject>();
  if (r.getWaitForPresence() && !exporter_.presence_ready(r.getObjectId())) {  // answered once it is (see ExportMemory)
    uint64_t object = r.getObjectId();
    held_opens_[object].push_back(std::make_shared<dipc::Request>(std::move(req)));
    // An importer waits for the map to prefetch. A lazy one commits within milliseconds and
    // the commit starts the walk; an eager one (or one whose source agent died after the
    // commit point, so nobody adopts) would wait for ever: it gets the walk a little later.
    if (pending_walks_.count(object)) port_.loop().after(kWalkAfterOpen, [this, object] { start_walk(object); });
    return;
  }
  capnp::MallocMessageBuilder scratch;
  auto map = scratch.initRoot<wire::ObjectMap>();
  if (Status s = exporter_.describe(r.getObjectId(), bytes(r.getToken()), map); !s) return req.fail(s.error());
  exporter_.touch(r.getObjectId(), bytes(r.getToken()), req.from());
  req.reply<wire::ObjectMap>([&](wire::ObjectMap::Builder b) {
    b.setRanges(map.asReader().getRanges());
    b.setPresent(map.asReader().getPresent());
    b.setPresentPages(map.getPresentPages());
    b.setStaged(map.asReader().getStaged());
    b.setStagedPages(map.getStagedPages());
    b.setPresenceKnown(map.getPresenceKnown());
  });
}

}  // namespace ferry::xmm
