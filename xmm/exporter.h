// Exporter: the source side of XMM. Holds the memory shells of processes that migrated away
// and serves their pages to the pagers that import them.
//
// Contract:
// - export_process() takes a handed-over process (pm::FrozenProcess::hand_over) under ptrace,
//   with PTRACE_O_EXITKILL: if this pager dies, its shells die with it and importers fail
//   cleanly instead of waiting. It answers at once; learn_presence_step() then walks the page tables
//   (PAGEMAP_SCAN) to know which pages carry data, off the migration's freeze (the pager
//   calls it after the commit). The others are
//   reported as zero and never sent. Until it has, describe() gives the ranges only
//   (presenceKnown false) and fetch() reads the pagemap entries of the pages asked for.
// - Every request must carry the object's id and its token (the capability); anything else is
//   refused with kUnauthorized, and an address outside the object with kInvalid.
// - A page is read from the shell when asked for (as often as asked: a reply may be lost);
//   once the importer acknowledges it (piggybacked on its later requests), it is freed in the
//   shell (MADV_DONTNEED, injected in batches), so the memory is held about once across both
//   nodes. When every page carrying data has been acknowledged, or the importer releases the
//   object, the shell is killed and the object forgotten. So is it when its importer is gone
//   (the pager checks an importer silent for a while), and an object never adopted is
//   forgotten after a minute: nothing stays behind a failed migration.
// - Not thread-safe: one owner thread (ptrace's rule), the pager's event loop.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dipc/status.h"
#include "pm/tracee.h"
#include "xmm/precopy.h"
#include "xmm/xmm.capnp.h"

namespace ferry::xmm {

using Token = std::array<std::byte, 16>;

struct ExportedObject {
  uint64_t id = 0;
  Token token{};
  uint64_t present_pages = 0, total_pages = 0, staged_pages = 0;
};

class Exporter {
 public:
  explicit Exporter(std::string pager_name);
  ~Exporter();  // kills every shell still held

  struct Range {
    uint64_t start, end;
  };
  // With `adopt` false the caller keeps the process (see ExportMemory): adopt() takes it later.
  // With a finished `precopy`, the pages its stage holds as they are now are marked staged in
  // the object's map (they count as sent: the importer acknowledges them once installed).
  Result<ExportedObject> export_process(pid_t pid, const std::vector<Range>& ranges, const std::string& label,
                                        bool adopt = true, const Precopy* precopy = nullptr);
  Status adopt(uint64_t id, std::span<const std::byte> token);
  // Which pages of object `id` hold data, and with a finished `precopy`, which of them its
  // stage holds as they are now: at most `max_pages` pages per call (the pager serves requests
  // between calls); true once known. Ends the object if the page tables cannot be read.
  Result<bool> learn_presence_step(uint64_t id, Precopy* precopy, uint64_t max_pages);
  // Holds `what` until object `id` ends (after its shell was killed), or drops it now if `id`
  // is gone.
  void keep_until_done(uint64_t id, std::shared_ptr<void> what);
  bool presence_ready(uint64_t id) const;  // true for an unknown id too

  // The object's ranges and which pages carry data.
  Status describe(uint64_t id, std::span<const std::byte> token, wire::ObjectMap::Builder out);
  // Whether fetch() would accept the request (capability, alignment, bounds, size).
  Status check_fetch(uint64_t id, std::span<const std::byte> token, uint64_t address, uint32_t pages);
  // Fills `out` with `pages` pages from `address`: a presence bit each, and the bytes of the
  // present ones. If reading the shell fails midway, `out` says 0 pages.
  Status fetch(uint64_t id, std::span<const std::byte> token, uint64_t address, uint32_t pages,
               wire::PageData::Builder out);
  // The importer has these pages (ignored unless the capability and bounds are right).
  void acknowledge(uint64_t id, std::span<const std::byte> token, uint64_t address, uint32_t pages);
  Status release(uint64_t id, std::span<const std::byte> token, const std::string& reason);

  // A request from `importer` for this object (its liveness is judged from these).
  void touch(uint64_t id, std::span<const std::byte> token, const std::string& importer);
  // Adopted objects without a request for `quiet`: the caller checks their importer and calls
  // importer_checked() (reason "" = alive). Objects never adopted within `unadopted` are forgotten.
  struct IdleObject {
    uint64_t id;
    std::string importer, label;
  };
  std::vector<IdleObject> idle(std::chrono::milliseconds quiet, std::chrono::milliseconds unadopted);
  void importer_checked(uint64_t id, const std::string& gone_because);

  // Frees acknowledged pages in the shells (called from a timer) and ends the objects that are done.
  void free_sent_pages();
  void stat(capnp::List<wire::ExportStat>::Builder out) const;
  size_t size() const { return objects_.size(); }

 private:
  struct Object;
  Result<Object*> find(uint64_t id, std::span<const std::byte> token);
  void finish(Object& o, const std::string& why);

  std::string pager_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Object>> objects_;
};

}  // namespace ferry::xmm
