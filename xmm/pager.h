// Pager: the service of ferry-pager (XMM). It exports the memory of processes that migrated
// away from this node (Exporter) and serves the faults of processes restored here (Importer).
//
// Ports: the daemon's own, "pager@NODE" (control socket; object maps, fault fetches, releases),
// and "pager-bulk@NODE" (prefetch fetches): two endpoints, so a fault's reply never queues
// behind bulk data on one connection.
// Control requests (unix socket, root only): ExportMemory, ImportMemory, StartPrecopy and its
// queries; PagerStat and ImportProgress for anyone. Requests from other pagers must carry the
// object's (or the stage's) capability.
//
// Precopy (xmm/precopy.h): the source pager copies a running process's memory into a stage on
// the destination pager (xmm/stage.h), which an ImportMemory with that stage takes over. A stage
// that no import adopts and no message touches for a minute is dropped; so is a precopy that
// nobody asks about for a minute.
#pragma once

#include <chrono>
#include <memory>
#include <set>

#include "dipc/port.h"
#include "xmm/exporter.h"
#include "xmm/importer.h"
#include "xmm/precopy.h"
#include "xmm/stage.h"

namespace ferry::xmm {

// Both pager ports take frames of up to this many bytes (1 MiB of pages and the envelope).
inline constexpr size_t kPagerMaxMessage = (1 << 20) + (64 << 10);

struct PagerOptions {
  dipc::PortOptions bulk;  // the bulk port ("pager-bulk@NODE"): same fabric, key and master
  std::chrono::milliseconds timeout{2000};  // a page request unanswered this long: source lost
};

class Pager {
 public:
  static Result<std::unique_ptr<Pager>> start(dipc::Port& port, PagerOptions options);
  ~Pager();

  // Unregisters the bulk port from the master (the daemon unregisters the main one), then `done`.
  void unregister(std::function<void()> done) { bulk_->unregister(std::move(done)); }

  Exporter& exporter() { return exporter_; }
  Importer& importer() { return *importer_; }

 private:
  struct StageEntry {
    std::string token, label, source;
    std::shared_ptr<Stage> stage;
    std::chrono::steady_clock::time_point last_used;
  };

  Pager(dipc::Port& port, std::unique_ptr<dipc::Port> bulk, std::chrono::milliseconds timeout);
  void serve();
  void serve_precopy();  // pager_precopy.cc
  void forget_idle_precopies();
  void open_object(dipc::Request& req);
  // The presence walk of an export not yet walked (pending_walks_) begins; see ExportMemory.
  void start_walk(uint64_t object);
  void learn_presence(uint64_t object, uint64_t precopy_id);
  void precopy_committed(uint64_t precopy_id);  // the migration committed: forget it, keep its tracking with the shell
  // A stage for an import (nullptr if unknown): the stage store lets go of it.
  std::shared_ptr<Stage> adopt_stage(uint64_t id, const std::string& label);

  dipc::Port& port_;
  std::unique_ptr<dipc::Port> bulk_;
  Exporter exporter_;
  std::unique_ptr<Importer> importer_;
  std::map<uint64_t, std::unique_ptr<Precopy>> precopies_;  // source side
  std::map<uint64_t, StageEntry> stages_;                   // destination side, until adopted
  std::map<uint64_t, uint64_t> precopy_objects_;            // precopy id -> the object exported after it
  std::set<uint64_t> committed_precopies_;                  // committed while their export's walk goes on
  uint64_t next_precopy_ = 1, next_stage_ = 1;
  // OpenObject requests for objects whose presence is not learnt yet, answered once it is.
  std::map<uint64_t, std::vector<std::shared_ptr<dipc::Request>>> held_opens_;
  std::map<uint64_t, uint64_t> pending_walks_;  // object -> its precopy id (0: none), walk not begun
  dipc::EventLoop::TimerId free_timer_ = 0, idle_timer_ = 0;
};

}  // namespace ferry::xmm
