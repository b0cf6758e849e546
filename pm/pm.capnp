# Process management messages: the master's view of the cluster (and, with the migration
# issue, the process table and the migration protocol).
@0xca08ad55ae73bf8a;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::pm::wire");

struct ListNodes {}

struct NodeList {
  nodes @0 :List(NodeInfo);
  heartbeatMs @1 :UInt32;
  suspectMs @2 :UInt32;
  deadMs @3 :UInt32;
}

enum NodeState {
  alive @0;       # every port of the node heartbeats on time
  suspect @1;     # some port missed heartbeats for longer than suspectMs
  dead @2;        # some port has not been heard from for longer than deadMs
}

struct NodeInfo {
  name @0 :Text;
  address @1 :Text;              # the node's agent, "127.0.0.3:40123"
  state @2 :NodeState;
  heartbeatAgeMs @3 :UInt64;     # since the node's least recently heard port
  ports @4 :List(PortInfo);
}

struct PortInfo {
  name @0 :Text;
  address @1 :Text;
  pid @2 :UInt32;
  heartbeatAgeMs @3 :UInt64;
}

# ---- Processes (vproc) --------------------------------------------------------------------
# Every job has a global pid (gpid) from the master, which keeps the process table and is the
# commit point of every migration. Operations on a job are sent to the caller's local agent,
# which routes them to the agent that holds the job.

enum ProcessState {
  running @0;
  migrating @1;
  exited @2;
  lost @3;                       # its node or its memory's source died; see `reason`
}

struct ProcessInfo {
  gpid @0 :UInt64;
  uid @1 :UInt32;
  node @2 :Text;                 # where it runs (or ran last)
  pid @3 :UInt32;                # its pid on that node
  state @4 :ProcessState;
  command @5 :Text;
  migrations @6 :UInt32;
  exitStatus @7 :Int32;          # exited: status (128 + signal when killed)
  reason @8 :Text;               # lost: why
  output @9 :Text;               # the job's stdout/stderr log
  home @10 :Text;                # the node it was launched on
  rssKib @11 :UInt64;            # filled by the holding agent in `ps`
  parent @12 :UInt64;            # gpid of the parent job, 0 for none
  jobPid @13 :UInt32;            # its pid inside its job's own namespace: the same on every node
}

# CLI -> local agent.
struct RunJob {
  argv @0 :List(Text);
  cwd @1 :Text;
  env @2 :List(Text);
  node @3 :Text;                 # where to run; "" = this agent's node
}

struct RunReply {
  gpid @0 :UInt64;
  node @1 :Text;
  pid @2 :UInt32;
  output @3 :Text;
}

struct ListProcesses {}
struct ProcessList {
  processes @0 :List(ProcessInfo);
}

struct LookupProcess {
  gpid @0 :UInt64;
}

struct SignalProcess {
  gpid @0 :UInt64;
  signal @1 :Int32;
  forwardId @2 :Text;            # set by a source forwarding queued signals: delivered once per id
}

struct ReadOutput {               # the job's output log from `offset`, at most 64 KiB
  gpid @0 :UInt64;
  offset @1 :UInt64;
}

struct OutputChunk {
  data @0 :Data;
  info @1 :ProcessInfo;          # state at the time of the read (exited once drained)
}

# How the memory moves (docs/MIGRATION.md, "Modes").
enum MigrationMode {
  lazy @0;                       # state first, the job resumes at once, memory follows on demand
  eager @1;                      # stop-and-copy: every page arrives before the job resumes
  precopy @2;                    # memory copied while the job runs (dirty pages again), then lazy
}

struct MigrateProcess {
  gpid @0 :UInt64;
  to @1 :Text;                   # destination node
  mode @2 :MigrationMode = lazy;
  precopyRounds @3 :UInt32 = 4;  # at most this many copy rounds before the freeze
}

struct MigrateReply {
  migrationId @0 :Text;          # "m7@n1"
  from @1 :Text;
  to @2 :Text;
  pid @3 :UInt32;                # its pid on the destination
  freezeToResumeMs @4 :Float64;  # the job stood still this long
  captureMs @5 :Float64;
  installMs @6 :Float64;
  commitMs @7 :Float64;
  presentPages @8 :UInt64;       # pages that will follow lazily
  eagerBytes @9 :UInt64;         # sent with the state (written pages of file mappings)
  imageBytes @10 :UInt64;
  mode @11 :MigrationMode;
  precopyRounds @12 :UInt32;     # rounds copied while the job ran
  precopyPagesSent @13 :UInt64;  # pages sent in those rounds (a page dirtied again counts again)
  dirtyPagesAtFreeze @14 :UInt64;  # of the staged pages, those written since: they follow lazily
  pagesBeforeResume @15 :UInt64; # eager: pages that arrived while the job stood still
  precopyStagedPages @16 :UInt64;  # precopy: pages at the destination already, as they were at the freeze
}

# Agent -> master.
struct RegisterProcess {
  node @0 :Text;
  pid @1 :UInt32;
  uid @2 :UInt32;
  command @3 :Text;
  output @4 :Text;
  jobPid @5 :UInt32;             # its pid inside its job's namespace
}

struct RegisterReply {
  gpid @0 :UInt64;
}

struct ProcessEnded {
  gpid @0 :UInt64;
  node @1 :Text;
  exitStatus @2 :Int32;
  lost @3 :Bool;
  reason @4 :Text;
}

struct CommitMigration {
  gpid @0 :UInt64;
  migrationId @1 :Text;
  from @2 :Text;
  to @3 :Text;
  pid @4 :UInt32;
}

struct CancelMigration {          # from the source when it cannot know whether the commit happened
  gpid @0 :UInt64;
  migrationId @1 :Text;
}

struct CancelReply {
  committed @0 :Bool;            # too late: the migration committed; the source must hand over
}

# Source agent -> destination agent: step 2's offer. The destination installs, commits at the
# master and resumes; its reply says what happened.
struct EagerRun {
  address @0 :UInt64;
  data @1 :Data;
}

# A slice of a carried file's content (pm/carried_files.h).
struct CarriedRun {
  file @0 :UInt32;               # its index in the image's carried files
  offset @1 :UInt64;
  data @2 :Data;
}

# Source agent -> destination agent, ahead of an Offer whose pages and carried files do not fit
# in one message: a share of them, held at the destination under the migration id for the
# Offer (which says how many parts came before it). Dropped when no Offer takes them within 60 s.
struct OfferPart {
  migrationId @0 :Text;
  index @1 :UInt32;              # 0, 1, ...
  eager @2 :List(EagerRun);
  carried @3 :List(CarriedRun);
}

struct Offer {
  migrationId @0 :Text;
  gpid @1 :UInt64;
  uid @2 :UInt32;
  image @3 :Data;                # a serialized ProcessImage (pm/image.capnp)
  eager @4 :List(EagerRun);
  objectId @5 :UInt64;           # the exported memory's capability (xmm/xmm.capnp)
  token @6 :Data;
  pager @7 :Text;
  ranges @8 :List(Range);        # what the pager serves
  from @9 :Text;
  prefetch @10 :Bool = true;
  mode @11 :MigrationMode = lazy;  # eager: commit and resume only once every page has arrived
  stageId @12 :UInt64;           # precopy: the pages staged at the destination's pager (0: none)
  stageToken @13 :Data;
  stagedPages @14 :UInt64;       # of the job's pages, those already there (memory held already)
  parts @15 :UInt32;             # OfferParts sent ahead, which hold the rest of `eager` and `carried`
  carried @16 :List(CarriedRun);
}

struct Range {
  start @0 :UInt64;
  end @1 :UInt64;
}

struct OfferReply {
  pid @0 :UInt32;
  installMs @1 :Float64;
  commitMs @2 :Float64;
  pagesBeforeResume @3 :UInt64;  # eager: pages that arrived before the commit
}
