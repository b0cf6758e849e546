# XMM: the pagers' messages. A memory object is the exported memory of one frozen process,
# named by an id and an unguessable token (both needed: the token is the capability).
# Control (local unix socket, root only): ExportMemory, ImportMemory, PagerStat.
# Between pagers (fabric): OpenObject, FetchPages, ReleaseObject.
@0xd3f1c0a7e25b8e41;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::xmm::wire");

struct Range {
  start @0 :UInt64;
  end @1 :UInt64;
}

struct Capability {
  objectId @0 :UInt64;
  token @1 :Data;                # 16 random bytes
  pager @2 :Text;                # the exporting pager's port ("pager@n1")
}

# Export the memory of a frozen process that the caller has handed over (left stopped, not
# traced): the pager takes it under ptrace, and from then on it is only a memory shell.
# With adopt = false the caller (the source agent) still holds the frozen process: pages are
# served from it, but it is neither freed nor killed until AdoptShell (after the migration
# committed); ReleaseObject before that just forgets the object (the migration was aborted
# and the process resumes where it was).
struct ExportMemory {
  pid @0 :UInt32;
  ranges @1 :List(Range);        # what to export (the anonymous VMAs of its image)
  label @2 :Text;                # for logs: "gpid 7 migration m3"
  adopt @3 :Bool = true;
}

struct AdoptShell {
  objectId @0 :UInt64;
  token @1 :Data;
}

struct ExportReply {
  capability @0 :Capability;
  presentPages @1 :UInt64;       # pages that carry data (pagemap)
  totalPages @2 :UInt64;
}

# Serve the faults of a process's userfaultfd from a memory object. The pager copies the
# descriptor `uffdFd` out of process `holderPid` (pidfd_getfd); ranges are registered already.
struct ImportMemory {
  capability @0 :Capability;
  holderPid @1 :UInt32;
  uffdFd @2 :Int32;
  pid @3 :UInt32;                # the process whose faults these are (stopped on failure)
  ranges @4 :List(Range);
  prefetch @5 :Bool = true;
  label @6 :Text;
}

struct ImportReply {
  importId @0 :UInt64;
}

struct OpenObject {
  objectId @0 :UInt64;
  token @1 :Data;
}

struct ObjectMap {
  ranges @0 :List(Range);
  present @1 :Data;              # one bit per page over the ranges in order, LSB first
  presentPages @2 :UInt64;
}

struct FetchPages {
  objectId @0 :UInt64;
  token @1 :Data;
  address @2 :UInt64;
  pages @3 :UInt32;
  prefetch @4 :Bool;             # bulk (false: a fault is waiting)
  acked @5 :List(PageSpan);      # earlier replies that arrived: their pages may be freed at the source
}

struct PageSpan {
  address @0 :UInt64;            # in the memory object
  pages @1 :UInt32;
}

struct PageData {
  address @0 :UInt64;
  pages @1 :UInt32;
  present @2 :Data;              # bit per page: set = bytes follow in `data`; clear = zero page
  data @3 :Data;                 # the present pages, in order
}

struct ReleaseObject {
  objectId @0 :UInt64;
  token @1 :Data;
  reason @2 :Text;
}

struct PagerStat {}

struct Histogram {
  p50Us @0 :Float64;
  p90Us @1 :Float64;
  p99Us @2 :Float64;
  maxUs @3 :Float64;
  count @4 :UInt64;
}

struct Sample {                  # one 100 ms window of an import
  atMs @0 :UInt32;               # since the import began
  faults @1 :UInt32;
  onDemandPages @2 :UInt32;
  prefetchedPages @3 :UInt32;
  bytes @4 :UInt64;
}

struct ImportStat {
  importId @0 :UInt64;
  label @1 :Text;
  pid @2 :UInt32;
  source @3 :Text;
  state @4 :Text;                # "fetching", "complete", "failed: <reason>"
  faults @5 :UInt64;
  onDemandPages @6 :UInt64;
  prefetchedPages @7 :UInt64;
  zeroPages @8 :UInt64;
  bytesOnWire @9 :UInt64;
  duplicatePages @10 :UInt64;
  presentPages @11 :UInt64;      # pages the source holds data for
  arrivedPages @12 :UInt64;      # of those, installed here (or made moot by the process)
  latency @13 :Histogram;
  msToLastPage @14 :Float64;     # 0 until complete
  elapsedMs @15 :Float64;
  series @16 :List(Sample);
}

struct ExportStat {
  objectId @0 :UInt64;
  label @1 :Text;
  pid @2 :UInt32;
  presentPages @3 :UInt64;
  deliveredPages @4 :UInt64;
  freedPages @5 :UInt64;
  bytesSent @6 :UInt64;
  state @7 :Text;
}

struct PagerStatReply {
  node @0 :Text;
  imports @1 :List(ImportStat);
  exports @2 :List(ExportStat);
}
