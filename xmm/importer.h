// Importer: the destination side of XMM. Owns the userfaultfd of every lazily restored process
// on this node and resolves its faults with pages fetched from the exporting pager.
//
// Contract:
// - start() opens the object at the source and calls `done` with the import id once it is
//   serving, or with the error (wrong token, source unreachable). The process must not run
//   before that. Which pages carry data the source says later (off the migration's downtime):
//   until then every page is fetched when touched, and the prefetcher waits.
// - A fault on a page with data is fetched on the fault port (a window that grows while the
//   process faults sequentially); a page without data gets a zero page here, without traffic.
//   A page is asked for once: concurrent faults on it wait for the same reply.
// - The prefetcher pulls the rest on the bulk port (another endpoint, so a fault never waits
//   behind bulk data), nearest to the latest fault first, a few 1 MiB requests in flight.
// - With a stage (precopy), the pages the object map marks staged are installed from it: at
//   once on a fault, and the rest in the background, 1 MiB per turn of the loop. A page the
//   stage turns out not to hold is fetched from the source like any other.
// - When every page with data has arrived, the ranges are unregistered (the process no longer
//   depends on the source), the source is told to release the object, and the uffd is closed.
// - A page request that times out is asked again, up to 4 timeouts in a row without any good
//   reply (a lost request or reply costs one timeout, never the job). If the source cannot be
//   reached (refused, its node dead, or 5 timeouts in a row), the process is killed
//   (SIGKILL; a thread blocked on a fault cannot hang) and the import ends "failed: <reason>",
//   with the number of pages that never arrived; `on_end` is called either way.
// - A fork before the import completed is not supported yet: the child is killed, and logged.
// - Loop thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dipc/port.h"
#include "dipc/unique_fd.h"
#include "xmm/page_table.h"
#include "xmm/stage.h"
#include "xmm/userfault.h"
#include "xmm/xmm.capnp.h"

namespace ferry::xmm {

struct ImportSpec {
  uint64_t object_id = 0;
  std::string token;   // 16 bytes
  std::string source;  // the exporting pager's port, "pager@n1"
  pid_t pid = 0;       // the process being served
  std::vector<PageTable::Range> ranges;
  std::vector<PageTable::Range> registered;  // unregistered when complete (empty: `ranges`)
  bool prefetch = true;
  std::string label;   // "gpid 7 migration m3"
  std::shared_ptr<Stage> stage;  // precopy: pages sent ahead, installed from here (may be null)
};

struct ImportEnd {
  uint64_t import_id = 0;
  pid_t pid = 0;
  bool complete = false;        // every page arrived
  std::string reason;           // why it failed
  uint64_t pages_missing = 0;   // pages with data that never arrived
};

class Importer {
 public:
  // `fault_port` and `bulk_port` are this pager's two ports; both live on the same loop.
  Importer(dipc::Port& fault_port, dipc::Port& bulk_port, std::chrono::milliseconds timeout);
  ~Importer();

  void start(ImportSpec spec, UniqueFd uffd, std::function<void(Result<uint64_t>)> done);
  void on_end(std::function<void(const ImportEnd&)> cb) { on_end_ = std::move(cb); }
  void stat(capnp::List<wire::ImportStat>::Builder out) const;
  // The import labelled `label` (found = false if none).
  void progress(const std::string& label, wire::ImportProgressReply::Builder out) const;
  size_t size() const { return imports_.size(); }
  size_t active() const;
  bool serves(pid_t pid) const;  // an import that has not ended serves this process

  // The bulk port's name for a pager port: "pager@n1" -> "pager-bulk@n1".
  static std::string bulk_name(const std::string& pager_port);

 private:
  struct Import;
  // OpenObject: the first answer (`done` set) starts serving; with `wait_for_presence` the
  // answer comes once the source knows which pages hold data, and that is applied.
  void open_object(uint64_t id, bool wait_for_presence, std::function<void(Result<uint64_t>)> done);
  void apply_presence_more(uint64_t id);
  void on_readable(uint64_t id);
  void handle_fault(Import& im, uint64_t address);
  void fetch(Import& im, const PageRun& run, bool prefetch);
  void install(uint64_t id, uint64_t dest, uint64_t source, uint32_t pages, bool prefetch,
               Result<dipc::Message<wire::PageData>> reply);
  void prefetch_more(Import& im);
  // Installs the staged pages of `run` that the stage holds; the others become kNeed.
  // false if the import failed.
  bool install_staged(Import& im, const PageRun& run);
  void install_staged_more(uint64_t id);
  void check_complete(Import& im);
  void fail(Import& im, const std::string& reason);
  void finish(Import& im);

  dipc::Port& fault_port_;
  dipc::Port& bulk_port_;
  std::chrono::milliseconds timeout_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Import>> imports_;
  std::function<void(const ImportEnd&)> on_end_;
};

}  // namespace ferry::xmm
