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
  precopyId @4 :UInt64;          # a finished precopy of this process: its clean staged pages
}

struct AdoptShell {
  objectId @0 :UInt64;
  token @1 :Data;
}

struct ExportReply {
  capability @0 :Capability;
  presentPages @1 :UInt64;       # pages that carry data (pagemap)
  totalPages @2 :UInt64;
  stagedPages @3 :UInt64;        # of those, held by the destination's stage (precopy)
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
  stageId @7 :UInt64;            # precopy: the stage on this pager that holds pages sent ahead
  registered @8 :List(Range);    # what the restore registered (whole VMAs; `ranges` may leave out
                                 # pages it wrote itself): unregistered once every page is here
}

struct ImportReply {
  importId @0 :UInt64;
}

# How far an import is (a small question, asked often while an eager migration waits).
struct ImportProgress {
  label @0 :Text;
}

struct ImportProgressReply {
  found @0 :Bool;
  state @1 :Text;                # as in ImportStat
  presentPages @2 :UInt64;
  arrivedPages @3 :UInt64;
  stagedPages @4 :UInt64;        # of those, installed from the precopy stage
}

struct OpenObject {
  objectId @0 :UInt64;
  token @1 :Data;
  waitForPresence @2 :Bool;      # answer once the source knows which pages hold data (else at
                                 # once, with presenceKnown false until it does)
}

struct ObjectMap {
  ranges @0 :List(Range);
  present @1 :Data;              # one bit per page over the ranges in order, LSB first
  presentPages @2 :UInt64;
  staged @3 :Data;               # precopy: bit per page as `present`: the importer's stage holds
                                 # this page as it is now (empty: no precopy)
  stagedPages @4 :UInt64;
  presenceKnown @5 :Bool;        # false: present, staged and their counts are not filled in yet
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
  problem @4 :Text;              # pages = 0: why the source could not read them
}

struct ReleaseObject {
  objectId @0 :UInt64;
  token @1 :Data;
  reason @2 :Text;
}

# ---- Precopy (docs/XMM.md, "Precopy") --------------------------------------------------------
# Control (source agent -> its pager): copy a *running* process's memory to the destination's
# pager, round after round, resending what it wrote meanwhile. `uffdFd` is a userfaultfd the
# agent made the process create (and closes there once answered): the pager takes a copy with
# pidfd_getfd from `pid` and answers at once; tracking and the stage start after, and their
# failures show in the state.
struct StartPrecopy {
  pid @0 :UInt32;
  uffdFd @1 :Int32;
  ranges @2 :List(Range);        # its anonymous memory
  destination @3 :Text;          # the destination pager, "pager@n2"
  rounds @4 :UInt32;             # at most this many rounds
  label @5 :Text;
}

struct PrecopyReply {
  precopyId @0 :UInt64;
}

struct QueryPrecopy {            # answered with a PrecopyStatus
  precopyId @0 :UInt64;
}

struct FinishPrecopy {           # the process is frozen now: a last look at what it wrote, then
  precopyId @0 :UInt64;          # tracking stops; answered with a PrecopyStatus
}

struct EndPrecopy {              # tracking stops and the precopy is forgotten; unless the migration
  precopyId @0 :UInt64;          # committed (its import took the stage), the destination drops
  reason @1 :Text;               # the stage
  committed @2 :Bool;
}

struct PrecopyStatus {
  state @0 :Text;                # "copying", "converged" (rounds done or little left), "failed: <why>",
                                 # "finished"
  round @1 :UInt32;              # the round in progress (or the last one)
  pagesSent @2 :UInt64;          # in every round so far
  bytesSent @3 :UInt64;
  lastDirtyPages @4 :UInt64;     # pages the latest round found written again
  stagedPages @5 :UInt64;        # pages whose latest copy the stage has acknowledged
  dirtyAtFinish @6 :UInt64;      # FinishPrecopy: staged pages written since (they follow lazily)
  elapsedMs @7 :Float64;
  stageId @8 :UInt64;            # the destination's stage (goes into the offer)
  stageToken @9 :Data;
  label @10 :Text;
}

# Between pagers: the destination keeps a stage per precopy (xmm/stage.h).
struct OpenStage {
  ranges @0 :List(Range);
  label @1 :Text;
  bytes @2 :UInt64;              # what the source expects to send (refused if memory is short)
}

struct StageOpened {
  stageId @0 :UInt64;
  token @1 :Data;
}

struct StagePages {              # on the bulk port; every page carries data
  stageId @0 :UInt64;
  token @1 :Data;
  round @2 :UInt32;
  address @3 :UInt64;
  pages @4 :UInt32;
  data @5 :Data;
}

struct DropStage {
  stageId @0 :UInt64;
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
  stagedPages @5 :UInt32;        # installed from the precopy stage (no traffic)
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
  stagedPages @17 :UInt64;       # precopy: pages installed from the local stage, no traffic
  latencyPercentiles @18 :List(Float64);  # fault service time p0, p1 .. p100 (us); empty: no faults
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
  precopies @3 :List(PrecopyStatus);
}
