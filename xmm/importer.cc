#include "xmm/importer.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "pm/proc_info.h"

namespace ferry::xmm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = PageTable::kPage;
constexpr uint32_t kMaxFaultWindow = 32;    // pages per fault request, at most
constexpr uint32_t kPrefetchPages = 128;    // 512 KiB per bulk request
constexpr int kPrefetchInFlight = 8;
constexpr int kMaxTimeoutsInARow = 4;        // then the source is lost
constexpr size_t kMaxAcksPerRequest = 1024;  // acknowledgements piggybacked on one bulk request
constexpr size_t kMaxAcksPerFault = 8;       // and on a fault's: it stays one small frame
constexpr auto kWindow = std::chrono::milliseconds(100);  // time series resolution
constexpr size_t kMaxSeries = 600;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

struct Importer::Import {
  uint64_t id;
  ImportSpec spec;
  std::unique_ptr<Userfault> uffd;
  UniqueFd pidfd;
  std::unique_ptr<PageTable> table;
  Clock::time_point started = Clock::now(), ended_at{};
  std::string state = "opening";
  bool ended = false;
  Clock::time_point last_heard = Clock::now();  // the source's latest good answer
  uint64_t retries = 0;                          // page requests asked again after a timeout
  int timeouts_in_a_row = 0;
  std::vector<std::pair<uint64_t, uint32_t>> acks;  // replies received, to tell the source
  // Fault-around: the window grows while faults follow each other.
  uint64_t last_fault = 0;
  uint32_t window = 1;
  int bulk_in_flight = 0;
  std::map<uint64_t, Clock::time_point> waiting;  // page -> when a fault on it was read
  std::vector<std::unique_ptr<Userfault>> children;  // userfaultfds of forked children
  std::vector<uint8_t> present_bits, staged_bits;     // the source's map, while being applied
  // Traffic.
  uint64_t faults = 0, on_demand = 0, prefetched = 0, zero = 0, bytes = 0, duplicates = 0, arrived = 0, staged = 0;
  std::vector<float> latency_us;
  struct Window {
    uint32_t faults = 0, on_demand = 0, prefetched = 0, staged = 0;
    uint64_t bytes = 0;
  };
  std::vector<Window> series;
  Window& now_window() {
    size_t i = size_t((Clock::now() - started) / kWindow);
    if (i >= kMaxSeries) i = kMaxSeries - 1;
    if (series.size() <= i) series.resize(i + 1);
    return series[i];
  }
};

Importer::Importer(dipc::Port& fault_port, dipc::Port& bulk_port, std::chrono::milliseconds timeout)
    : fault_port_(fault_port), bulk_port_(bulk_port), timeout_(timeout) {}

Importer::~Importer() {
  for (auto& [id, im] : imports_)
    if (!im->ended) fail(*im, "the pager is stopping");
}

bool Importer::serves(pid_t pid) const {
  for (const auto& [id, im] : imports_)
    if (!im->ended && im->spec.pid == pid) return true;
  return false;
}

std::string Importer::bulk_name(const std::string& p) {
  auto at = p.find('@');
  return at == std::string::npos ? p + "-bulk" : "pager-bulk" + p.substr(at);
}

size_t Importer::active() const {
  size_t n = 0;
  for (const auto& [id, im] : imports_) n += im->ended ? 0 : 1;
  return n;
}

void Importer::start(ImportSpec spec, UniqueFd uffd, std::function<void(Result<uint64_t>)> done) {
  auto im = std::make_unique<Import>();
  im->id = next_id_++;
  im->spec = std::move(spec);
  im->uffd = std::make_unique<Userfault>(std::move(uffd));
  im->pidfd.reset(int(::syscall(SYS_pidfd_open, im->spec.pid, 0)));
  if (!im->pidfd) return done(make_error(ErrorCode::kNotFound, errno_message("import: pid " + std::to_string(im->spec.pid), errno)));
  uint64_t id = im->id;
  const ImportSpec& s = im->spec;
  spdlog::info("{}: import {} of {}: object {} from {}, pid {}, {} ranges{}", fault_port_.name(), id, s.label,
               s.object_id, s.source, s.pid, s.ranges.size(), s.prefetch ? "" : ", no prefetch");
  // The object is opened first (a wrong capability is refused before the process may run),
  // but serving starts before the source says which pages hold data (it finds out after the
  // freeze, off the job's downtime): a page asked for meanwhile comes back with data or zero.
  im->table = std::make_unique<PageTable>(s.ranges);
  imports_[id] = std::move(im);
  open_object(id, /*wait_for_presence=*/false, std::move(done));
}

void Importer::open_object(uint64_t id, bool wait_for_presence, std::function<void(Result<uint64_t>)> done) {
  Import& ref = *imports_.at(id);
  fault_port_.call<wire::OpenObject, wire::ObjectMap>(
      ref.spec.source,
      [&](wire::OpenObject::Builder b) {
        b.setObjectId(ref.spec.object_id);
        b.initToken(uint32_t(ref.spec.token.size()));
        std::memcpy(b.getToken().begin(), ref.spec.token.data(), ref.spec.token.size());
        b.setWaitForPresence(wait_for_presence);
      },
      [this, id, done = std::move(done)](Result<dipc::Message<wire::ObjectMap>> r) {
        auto it = imports_.find(id);
        if (it == imports_.end() || it->second->ended) {
          if (done) done(make_error(ErrorCode::kInternal, "import vanished"));
          return;
        }
        Import& im = *it->second;
        if (!r) {
          fail(im, "cannot open object " + std::to_string(im.spec.object_id) + " at " + im.spec.source + ": " + r.error().message);
          if (done) done(r.error());
          return;
        }
        auto map = r.value().get();
        bool same = map.getRanges().size() == im.spec.ranges.size();
        for (uint32_t i = 0; same && i < map.getRanges().size(); ++i)
          same = map.getRanges()[i].getStart() == im.spec.ranges[i].start && map.getRanges()[i].getEnd() == im.spec.ranges[i].end;
        if (!same) {
          fail(im, "the object at " + im.spec.source + " does not cover the ranges to serve");
          if (done) done(make_error(ErrorCode::kInvalid, im.state));
          return;
        }
        if (done) {  // the first answer: serve
          im.state = "fetching";
          Status w = fault_port_.loop().watch(im.uffd->fd(), [this, id](uint32_t) { on_readable(id); });
          if (!w) {
            fail(im, w.error().message);
            return done(w.error());
          }
          (void)fault_port_.loop().watch(im.pidfd.get(), [this, id](uint32_t) {
            auto it = imports_.find(id);
            if (it == imports_.end() || it->second->ended) return;
            it->second->state = it->second->table->outstanding() ? "ended: the process exited" : "complete";
            finish(*it->second);
          });
          spdlog::info("{}: import {} of {} serving", fault_port_.name(), id, im.spec.label);
          done(id);
          if (im.ended) return;
        }
        if (!map.getPresenceKnown()) return open_object(id, /*wait_for_presence=*/true, nullptr);
        im.present_bits.assign(map.getPresent().begin(), map.getPresent().end());
        if (im.spec.stage) im.staged_bits.assign(map.getStaged().begin(), map.getStaged().end());
        apply_presence_more(id);
      },
      dipc::CallOptions{timeout_, std::nullopt});
}

// In steps (faults are served between them), then the prefetcher and the stage installer start.
void Importer::apply_presence_more(uint64_t id) {
  auto it = imports_.find(id);
  if (it == imports_.end() || it->second->ended) return;
  Import& im = *it->second;
  constexpr uint64_t kPagesPerStep = 32 * 1024;  // ~0.25 ms
  if (!im.table->apply_presence_step(im.present_bits, im.staged_bits, kPagesPerStep)) {
    fault_port_.loop().post([this, id] { apply_presence_more(id); });
    return;
  }
  im.present_bits = {};
  im.staged_bits = {};
  spdlog::info("{}: import {} of {}: {} pages with data at {}, {} of them staged here ({:.1f} ms after the start)",
               fault_port_.name(), id, im.spec.label, im.table->present_pages(), im.spec.source, im.table->staged(),
               ms(Clock::now() - im.started));
  check_complete(im);
  prefetch_more(im);
  if (!im.ended && im.table->staged() > 0) fault_port_.loop().post([this, id] { install_staged_more(id); });
}

// Whether [start, end) of process `pid` lies in a MAP_SHARED mapping (read when the process
// gives pages back, which is rare).
static bool in_shared_mapping(pid_t pid, uint64_t start, uint64_t end) {
  auto maps = pm::read_maps(pm::task_with_memory(pid));
  if (!maps) return false;
  for (const auto& v : maps.value())
    if (v.shared && start < v.end && v.start < end) return true;
  return false;
}

void Importer::on_readable(uint64_t id) {
  auto it = imports_.find(id);
  if (it == imports_.end() || it->second->ended) return;
  Import& im = *it->second;
  std::vector<UserfaultEvent> events;
  if (Status s = im.uffd->read_events(events); !s) return fail(im, s.error().message);
  for (const auto& e : events) {
    if (im.ended) return;
    switch (e.kind) {
      case UserfaultEvent::Kind::kPageFault: handle_fault(im, e.address); break;
      case UserfaultEvent::Kind::kRemove:
        // MADV_DONTNEED of shared memory keeps its data (shmem): its pages still come.
        if (in_shared_mapping(im.spec.pid, e.address, e.end)) break;
        im.table->drop(e.address, e.end);
        break;
      case UserfaultEvent::Kind::kUnmap: im.table->drop(e.address, e.end); break;
      case UserfaultEvent::Kind::kRemap: im.table->move(e.address, e.to, e.length); break;
      case UserfaultEvent::Kind::kFork: {
        // The child shares pages with the parent only until the source frees them: it may run
        // as long as it never touches a page that has not arrived (fork + exec does not).
        auto child = std::make_unique<Userfault>(UniqueFd(e.fork_fd));
        Userfault* c = child.get();
        im.children.push_back(std::move(child));
        spdlog::info("{}: import {} of {}: the process forked before all pages arrived; the child is killed if it "
                     "touches one that has not", fault_port_.name(), im.id, im.spec.label);
        (void)fault_port_.loop().watch(c->fd(), [this, c, table = im.table.get(), label = im.spec.label](uint32_t) {
          std::vector<UserfaultEvent> evs;
          (void)c->read_events(evs);
          for (const auto& ev : evs) {
            if (ev.kind != UserfaultEvent::Kind::kPageFault) continue;
            // Memory the source never touched is zero for the child as well.
            auto st = table->state(ev.address);
            if (!st || *st == PageState::kZero) {
              (void)c->zero(ev.address, kPage);
              continue;
            }
            if (ev.thread > 0) {
              spdlog::warn("{}: a child of {} (pid {}) touched {:#x} before it arrived from the source: killed "
                           "(fork before the last page is not supported yet)", fault_port_.name(), label, ev.thread,
                           ev.address);
              ::kill(ev.thread, SIGKILL);
            }
          }
        });
        break;
      }
      default: break;
    }
  }
  check_complete(im);
}

void Importer::handle_fault(Import& im, uint64_t address) {
  ++im.faults;
  ++im.now_window().faults;
  auto now = Clock::now();
  auto state = im.table->state(address);
  if (!state || *state == PageState::kZero || *state == PageState::kHere) {
    // Memory the source never touched (or that grew since): a zero page, no traffic. A page
    // already here was installed between the fault and now: wake the thread.
    auto r = im.uffd->zero(address, kPage);
    if (!r) return fail(im, r.error().message);
    if (state && *state == PageState::kZero) {
      im.table->set(address, 1, PageState::kHere);
      ++im.zero;
    }
    im.latency_us.push_back(float(ms(Clock::now() - now) * 1000));
    return;
  }
  if (*state == PageState::kStaged) {
    auto run = im.table->run_at(address, 16);
    if (!install_staged(im, *run)) return;
    if (im.table->state(address) == PageState::kHere) {
      im.latency_us.push_back(float(ms(Clock::now() - now) * 1000));
      return;
    }
    state = im.table->state(address);  // the stage did not hold it after all: from the source
  }
  im.waiting.emplace(address, now);
  if (*state == PageState::kInFlight) return;  // its reply wakes this thread too
  // Sequential faults grow the window; anything else starts over.
  if (address >= im.last_fault && address <= im.last_fault + 2 * uint64_t(im.window) * kPage)
    im.window = std::min(kMaxFaultWindow, im.window * 2);
  else
    im.window = 1;
  im.last_fault = address;
  auto run = im.table->run_at(address, im.window);
  fetch(im, *run, false);
}

void Importer::fetch(Import& im, const PageRun& run, bool prefetch) {
  im.table->set(run.address, run.pages, PageState::kInFlight);
  if (prefetch) ++im.bulk_in_flight;
  uint64_t id = im.id;
  dipc::Port& port = prefetch ? bulk_port_ : fault_port_;
  std::string to = prefetch ? bulk_name(im.spec.source) : im.spec.source;
  port.call<wire::FetchPages, wire::PageData>(
      to,
      [&](wire::FetchPages::Builder b) {
        b.setObjectId(im.spec.object_id);
        b.initToken(uint32_t(im.spec.token.size()));
        std::memcpy(b.getToken().begin(), im.spec.token.data(), im.spec.token.size());
        b.setAddress(run.source);
        b.setPages(run.pages);
        b.setPrefetch(prefetch);
        size_t n = std::min<size_t>(im.acks.size(), prefetch ? kMaxAcksPerRequest : kMaxAcksPerFault);
        auto acked = b.initAcked(uint32_t(n));
        for (size_t i = 0; i < n; ++i) {
          acked[uint32_t(i)].setAddress(im.acks[im.acks.size() - n + i].first);
          acked[uint32_t(i)].setPages(im.acks[im.acks.size() - n + i].second);
        }
        im.acks.resize(im.acks.size() - n);
      },
      [this, id, dest = run.address, source = run.source, pages = run.pages, prefetch](
          Result<dipc::Message<wire::PageData>> r) { install(id, dest, source, pages, prefetch, std::move(r)); },
      dipc::CallOptions{timeout_, std::nullopt});
}

void Importer::install(uint64_t id, uint64_t dest, uint64_t source, uint32_t pages, bool prefetch,
                       Result<dipc::Message<wire::PageData>> reply) {
  auto it = imports_.find(id);
  if (it == imports_.end() || it->second->ended) return;
  Import& im = *it->second;
  if (prefetch) --im.bulk_in_flight;
  if (!reply) {
    // A request or its reply may be lost while the source lives: ask again, a few times in a
    // row at most (a node that died is known sooner: its name no longer resolves).
    if (reply.error().code == ErrorCode::kTimeout && ++im.timeouts_in_a_row <= kMaxTimeoutsInARow) {
      ++im.retries;
      spdlog::warn("pager: {}: pages at {:#x} (+{}) from {}: {}; asking again", im.spec.label, source, pages,
                   im.spec.source, reply.error().message);
      // Only the pages still waiting for this reply (the process may have dropped some meanwhile).
      auto waiting = [&](uint32_t i) {
        auto at = im.table->run_at(dest + i * kPage, 1);
        return at && at->state == PageState::kInFlight && at->source == source + i * kPage;
      };
      for (uint32_t i = 0; i < pages;) {
        if (!waiting(i)) {
          ++i;
          continue;
        }
        uint32_t j = i + 1;
        while (j < pages && waiting(j)) ++j;
        fetch(im, PageRun{dest + i * kPage, source + i * kPage, j - i, PageState::kInFlight}, prefetch);
        i = j;
      }
      return;
    }
    return fail(im, "source " + im.spec.source + " lost: " + reply.error().message);
  }
  im.last_heard = Clock::now();
  im.timeouts_in_a_row = 0;
  im.acks.emplace_back(source, pages);
  auto body = reply.value().get();
  auto bits = body.getPresent();
  auto data = body.getData();
  if (body.getPages() == 0)
    return fail(im, "source " + im.spec.source + " could not read the pages: " + std::string(body.getProblem()));
  if (body.getPages() != pages || bits.size() < (pages + 7) / 8)
    return fail(im, "source " + im.spec.source + " sent a malformed page reply");
  auto has_data = [&](uint32_t i) { return (bits[i / 8] >> (i % 8)) & 1; };
  std::vector<size_t> offset(pages);
  size_t off = 0;
  for (uint32_t i = 0; i < pages; ++i) {
    offset[i] = off;
    if (has_data(i)) off += kPage;
  }
  if (off != data.size()) return fail(im, "source " + im.spec.source + " sent a page reply of the wrong size");
  im.bytes += data.size();
  im.now_window().bytes += data.size();
  auto now = Clock::now();
  // Install the pages still waiting for this reply (the process may have dropped or moved
  // some meanwhile), in runs of equal kind.
  for (uint32_t i = 0; i < pages;) {
    auto at = im.table->run_at(dest + i * kPage, 1);
    if (!at || at->state != PageState::kInFlight || at->source != source + i * kPage) {
      ++i;
      continue;
    }
    uint32_t j = i + 1;
    while (j < pages && has_data(j) == has_data(i)) {
      auto next = im.table->run_at(dest + j * kPage, 1);
      if (!next || next->state != PageState::kInFlight || next->source != source + j * kPage) break;
      ++j;
    }
    uint64_t at_addr = dest + i * kPage, len = uint64_t(j - i) * kPage;
    Result<Resolve> r = Resolve::kDone;
    uint64_t already = 0;
    for (int tries = 0; tries < 100; ++tries) {
      r = has_data(i) ? im.uffd->copy(at_addr, std::span(reinterpret_cast<const std::byte*>(data.begin()) + offset[i], len),
                                      &already)
                      : im.uffd->zero(at_addr, len);
      if (!r || r.value() != Resolve::kRetry) break;
      on_readable(id);  // an address-space change is pending: take it in first
      if (im.ended) return;
    }
    if (!r) return fail(im, r.error().message);
    if (r.value() == Resolve::kRetry) {  // still changing: ask again later
      im.table->set(at_addr, j - i, PageState::kNeed);
      i = j;
      continue;
    }
    im.duplicates += already;
    im.table->set(at_addr, j - i, PageState::kHere);
    uint64_t n = j - i;
    if (im.spec.stage) im.spec.stage->release(source + uint64_t(i) * kPage, uint32_t(n));  // its stale copy, if any
    im.arrived += has_data(i) ? n : 0;
    if (!has_data(i)) im.zero += n;
    if (prefetch) {
      im.prefetched += n;
      im.now_window().prefetched += uint32_t(n);
    } else {
      im.on_demand += n;
      im.now_window().on_demand += uint32_t(n);
    }
    for (uint64_t a = at_addr; a < at_addr + len; a += kPage)
      if (auto w = im.waiting.find(a); w != im.waiting.end()) {
        im.latency_us.push_back(float(ms(now - w->second) * 1000));
        im.waiting.erase(w);
      }
    i = j;
  }
  check_complete(im);
  if (!im.ended) prefetch_more(im);
}

void Importer::prefetch_more(Import& im) {
  if (!im.spec.prefetch || im.ended || !im.table || !im.table->presence_known()) return;
  while (im.bulk_in_flight < kPrefetchInFlight) {
    auto run = im.table->next_needed(im.last_fault, kPrefetchPages);
    if (!run) return;
    fetch(im, *run, true);
  }
}

bool Importer::install_staged(Import& im, const PageRun& run) {
  Stage& stage = *im.spec.stage;
  uint64_t id = im.id;
  for (uint32_t i = 0; i < run.pages;) {
    uint64_t src = run.source + uint64_t(i) * kPage, dest = run.address + uint64_t(i) * kPage;
    const std::byte* first = stage.page(src);
    if (!first) {
      im.table->set(dest, 1, PageState::kNeed);
      ++i;
      continue;
    }
    uint32_t n = 1;  // pages contiguous in the stage too
    while (i + n < run.pages && stage.page(src + uint64_t(n) * kPage) == first + uint64_t(n) * kPage) ++n;
    Result<Resolve> r = Resolve::kDone;
    uint64_t already = 0;
    for (int tries = 0; tries < 100; ++tries) {
      r = im.uffd->copy(dest, std::span(first, uint64_t(n) * kPage), &already);
      if (!r || r.value() != Resolve::kRetry) break;
      on_readable(id);  // an address-space change is pending: take it in first
      if (im.ended) return false;
    }
    if (!r) {
      fail(im, r.error().message);
      return false;
    }
    if (r.value() != Resolve::kRetry) {
      // Pages the process dropped meanwhile are kHere already; set() keeps the counts right.
      im.table->set(dest, n, PageState::kHere);
      im.staged += n;
      im.now_window().staged += n;
      im.arrived += n;
      im.acks.emplace_back(src, n);
      stage.release(src, n);
    }
    i += n;
  }
  return true;
}

void Importer::install_staged_more(uint64_t id) {
  auto it = imports_.find(id);
  if (it == imports_.end() || it->second->ended || !it->second->table) return;
  Import& im = *it->second;
  auto run = im.table->next_staged(kPrefetchPages);
  if (!run) return;
  if (!install_staged(im, *run)) return;
  check_complete(im);
  if (im.ended) return;
  prefetch_more(im);  // pages the stage did not hold are fetched
  fault_port_.loop().post([this, id] { install_staged_more(id); });
}

void Importer::check_complete(Import& im) {
  if (im.ended || !im.table || !im.table->presence_known() || im.table->outstanding() != 0) return;
  im.state = "complete";
  finish(im);
}

void Importer::fail(Import& im, const std::string& reason) {
  if (im.ended) return;
  uint64_t missing = im.table ? im.table->outstanding() : 0;
  if (im.table && !im.table->presence_known())
    im.state = "failed: " + reason + " (at most " + std::to_string(missing) +
               " pages never arrived: the source went before it said which held data)";
  else
    im.state = "failed: " + reason + " (" + std::to_string(missing) + " pages never arrived)";
  spdlog::error("{}: import {} of {}: {}; pid {} killed", fault_port_.name(), im.id, im.spec.label, im.state, im.spec.pid);
  if (im.pidfd) ::syscall(SYS_pidfd_send_signal, im.pidfd.get(), SIGKILL, nullptr, 0);
  finish(im);
}

void Importer::finish(Import& im) {
  if (im.ended) return;
  im.ended = true;
  im.ended_at = Clock::now();
  auto& loop = fault_port_.loop();
  if (im.table) loop.unwatch(im.uffd->fd());
  if (im.pidfd) loop.unwatch(im.pidfd.get());
  bool complete = im.state == "complete";
  if (complete && im.table) {
    // Nothing is left at the source: faults on the rest (never-touched memory) are the kernel's.
    // The whole registered VMAs, pages the restore wrote itself included: nothing of this
    // userfaultfd may be left on the process (a later precopy would find its memory taken).
    for (const auto& r : im.spec.registered.empty() ? im.spec.ranges : im.spec.registered)
      (void)im.uffd->unregister(r.start, r.end);
  }
  for (auto& c : im.children) loop.unwatch(c->fd());
  im.children.clear();
  im.uffd.reset();
  im.spec.stage.reset();  // what it still held is of no use now
  if (im.table) {
    std::string token = im.spec.token;
    fault_port_.call<wire::ReleaseObject, dipc::wire::Empty>(
        im.spec.source,
        [&](wire::ReleaseObject::Builder b) {
          b.setObjectId(im.spec.object_id);
          b.initToken(uint32_t(token.size()));
          std::memcpy(b.getToken().begin(), token.data(), token.size());
          b.setReason(im.state);
        },
        [](Result<dipc::Message<dipc::wire::Empty>>) {}, dipc::CallOptions{timeout_, std::nullopt});
  }
  uint64_t missing = im.table ? im.table->outstanding() : 0;
  spdlog::info("{}: import {} of {} {} after {:.0f} ms: {} faults, {} pages on demand, {} prefetched, {} from the stage, "
               "{} zero, {} bytes, {} duplicates", fault_port_.name(), im.id, im.spec.label, im.state,
               ms(im.ended_at - im.started), im.faults, im.on_demand, im.prefetched, im.staged, im.zero, im.bytes,
               im.duplicates);
  if (on_end_) on_end_(ImportEnd{im.id, im.spec.pid, complete, complete ? "" : im.state, missing});
}

void Importer::stat(capnp::List<wire::ImportStat>::Builder out) const {
  uint32_t k = 0;
  for (const auto& [id, imp] : imports_) {
    const Import& im = *imp;
    auto s = out[k++];
    s.setImportId(id);
    s.setLabel(im.spec.label);
    s.setPid(uint32_t(im.spec.pid));
    s.setSource(im.spec.source);
    s.setState(im.state);
    s.setFaults(im.faults);
    s.setOnDemandPages(im.on_demand);
    s.setPrefetchedPages(im.prefetched);
    s.setZeroPages(im.zero);
    s.setBytesOnWire(im.bytes);
    s.setDuplicatePages(im.duplicates);
    s.setPresentPages(im.table ? im.table->present_pages() : 0);
    s.setArrivedPages(im.table ? im.table->present_pages() - im.table->outstanding() : 0);
    std::vector<float> l = im.latency_us;
    auto h = s.initLatency();
    if (!l.empty()) {
      std::sort(l.begin(), l.end());
      auto pct = [&](double q) { return double(l[std::min(l.size() - 1, size_t(q * double(l.size())))]); };
      h.setP50Us(pct(0.5));
      h.setP90Us(pct(0.9));
      h.setP99Us(pct(0.99));
      h.setMaxUs(double(l.back()));
      h.setCount(l.size());
      auto pcts = s.initLatencyPercentiles(101);
      for (uint32_t q = 0; q <= 100; ++q) pcts.set(q, q == 100 ? double(l.back()) : pct(q / 100.0));
    }
    s.setStagedPages(im.staged);
    auto end = im.ended ? im.ended_at : Clock::now();
    s.setElapsedMs(ms(end - im.started));
    if (im.state == "complete") s.setMsToLastPage(ms(im.ended_at - im.started));
    auto series = s.initSeries(uint32_t(im.series.size()));
    for (size_t i = 0; i < im.series.size(); ++i) {
      series[uint32_t(i)].setAtMs(uint32_t(i * kWindow.count()));
      series[uint32_t(i)].setFaults(im.series[i].faults);
      series[uint32_t(i)].setOnDemandPages(im.series[i].on_demand);
      series[uint32_t(i)].setPrefetchedPages(im.series[i].prefetched);
      series[uint32_t(i)].setBytes(im.series[i].bytes);
      series[uint32_t(i)].setStagedPages(im.series[i].staged);
    }
  }
}

void Importer::progress(const std::string& label, wire::ImportProgressReply::Builder out) const {
  for (const auto& [id, imp] : imports_) {
    const Import& im = *imp;
    if (im.spec.label != label) continue;
    out.setFound(true);
    out.setState(im.state);
    out.setPresentPages(im.table ? im.table->present_pages() : 0);
    out.setArrivedPages(im.table ? im.table->present_pages() - im.table->outstanding() : 0);
    out.setStagedPages(im.staged);
  }
}

}  // namespace ferry::xmm
