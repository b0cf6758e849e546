# ProcessImage: everything about a frozen process except its memory contents, which travel
# beside it (copied into a checkpoint directory, or served by the source pager).
@0x939ab986a5abf249;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::pm::wire");

struct ProcessImage {
  sourcePid @0 :UInt32;
  exe @1 :Text;                  # /proc/PID/exe at capture
  command @2 :Text;              # for people: the command line
  regs @3 :Data;                 # struct user_regs_struct (x86_64)
  xstate @4 :Data;               # XSAVE area, as long as the kernel gave it
  vmas @5 :List(Vma);
  mm @6 :MmFields;
  auxv @7 :Data;
  rseq @8 :Rseq;
  files @9 :List(OpenFile);
  cwd @10 :Text;
  umask @11 :UInt32;
  rlimits @12 :List(Rlimit);
  signals @13 :SignalState;
  creds @14 :Credentials;
  capturedAtNs @15 :UInt64;      # CLOCK_REALTIME
  pageSize @16 :UInt32;
  residentAnonBytes @17 :UInt64; # RssAnon at capture: what its memory will take elsewhere
  lazyPresence @18 :Bool = true; # false: the lazy VMAs carry no presence bits (a migration's
                                 # pager finds out after the freeze)
  pidInJob @19 :UInt32;          # its pid in its job's own pid namespace (pm/job_namespace.h),
                                 # which a restore recreates; 0: a process of the capturer's
                                 # pid namespace, not in a job
  itimers @21 :List(IntervalTimer); # setitimer's timers that are armed
  threads @20 :List(Thread);     # every thread, the leader first; the leader's registers,
                                 # extended state, mask, pending signals and rseq are the
                                 # fields above (its entry leaves them empty)
  carried @22 :List(CarriedFile);  # files whose content travels with the job (pm/carried_files.h)
  leaderExited @23 :Bool;        # its leader had called pthread_exit: threads[0] is only its tid
                                 # and name; the restore has it exit again as the process starts
  posixTimers @24 :List(PosixTimer); # timer_create's timers (pm/posix_timers.h)
}

# A file whose whole content travels with the job (its bytes beside the image, by index).
struct CarriedFile {
  path @0 :Text;                 # as the source saw it, without " (deleted)"
  size @1 :UInt64;
  mode @2 :UInt32;               # st_mode
  uid @3 :UInt32;
  gid @4 :UInt32;
  kind @5 :Kind;
  seals @6 :UInt32;              # memfd: F_GET_SEALS

  enum Kind {
    shared @0;                   # a regular file mapped MAP_SHARED and writable: kept at its path
    deleted @1;                  # unlinked since it was opened or mapped: an unlinked copy
    memfd @2;                    # a memfd the process holds a descriptor of
    memfdLazy @3;                # a memfd only mapped: made empty at its size, its pages served
                                 # lazily like other memory (no content travels here)
  }
}

# A timer of timer_create(2), armed or not, with its id (PR_TIMER_CREATE_RESTORE_IDS gives it
# back on the destination).
struct PosixTimer {
  id @0 :Int32;                  # the kernel's timer id (glibc's timer_t for SIGEV_SIGNAL)
  clock @1 :Int32;               # CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, ...
  notify @2 :Int32;              # SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, with SIGEV_THREAD_ID
  signal @3 :Int32;              # sigev_signo
  value @4 :UInt64;              # sigev_value
  thread @5 :UInt32;             # SIGEV_THREAD_ID: the target's index in `threads` (0: leader)
  remainingNs @6 :UInt64;        # until the next expiration (0: disarmed)
  intervalNs @7 :UInt64;         # its period (0: one-shot)
  overrun @8 :Int32;             # timer_getoverrun at capture (overruns of the last signal taken)
}

# An armed timer of setitimer(2) (ITIMER_REAL: SIGALRM, alarm(); VIRTUAL; PROF).
struct IntervalTimer {
  which @0 :Int32;
  valueUs @1 :UInt64;            # until it expires next
  intervalUs @2 :UInt64;         # its period (0: once)
}

# What each thread has of its own.
struct Thread {
  tid @0 :UInt32;                # as the capturing node saw it
  tidInJob @1 :UInt32;           # in the job's namespace (0: not in a job)
  regs @2 :Data;                 # struct user_regs_struct (fs_base, gs_base included)
  xstate @3 :Data;
  blocked @4 :UInt64;
  pending @5 :List(Data);        # thread-directed queued signals (siginfo_t)
  rseq @6 :Rseq;
  altStack @7 :AltStack;
  robustList @8 :UInt64;         # set_robust_list head (0: none)
  robustListLength @9 :UInt64;
  clearChildTid @10 :UInt64;     # set_tid_address (what pthread_join waits on)
  name @11 :Text;                # comm
  policy @12 :Int32;             # SCHED_*
  priority @13 :Int32;           # sched_priority (real-time policies)
  nice @14 :Int32;
  affinity @15 :Data;            # cpu_set_t
}

struct AltStack {
  base @0 :UInt64;
  size @1 :UInt64;
  flags @2 :UInt32;              # SS_DISABLE, SS_AUTODISARM (SS_ONSTACK is not restored: a
                                 # thread on its alternate stack is refused at capture)
}

struct Vma {
  start @0 :UInt64;
  end @1 :UInt64;
  prot @2 :UInt32;               # PROT_* bits
  kind @3 :Kind;
  path @4 :Text;                 # backing file ("" for anonymous memory)
  offset @5 :UInt64;             # in the file
  inode @6 :UInt64;
  device @7 :UInt64;             # makedev(major, minor)
  growsDown @8 :Bool;
  # Which pages carry content of their own (anonymous pages that were touched, file pages
  # that were written): one bit per page, least significant bit first. Pages without a bit
  # are zero (anonymous) or the file's content (file-backed).
  present @9 :Data;
  presentPages @10 :UInt64;
  shared @11 :Bool;              # MAP_SHARED
  carried @12 :UInt32;           # 1 + its index in ProcessImage.carried (0: not carried)

  enum Kind {
    anonymous @0;
    file @1;                     # MAP_PRIVATE file mapping
    heap @2;
    stack @3;
    vdso @4;
    vvar @5;
    vvarVclock @6;
    vsyscall @7;
    sharedMemory @8;             # MAP_SHARED anonymous memory, or a memfd only mapped (its
                                 # `carried` entry is made empty): shmem, served lazily
  }
}

struct MmFields {
  startCode @0 :UInt64;
  endCode @1 :UInt64;
  startData @2 :UInt64;
  endData @3 :UInt64;
  startBrk @4 :UInt64;
  brk @5 :UInt64;
  startStack @6 :UInt64;
  argStart @7 :UInt64;
  argEnd @8 :UInt64;
  envStart @9 :UInt64;
  envEnd @10 :UInt64;
}

struct Rseq {
  address @0 :UInt64;            # 0: not registered
  length @1 :UInt32;
  signature @2 :UInt32;
}

struct OpenFile {
  fd @0 :Int32;
  path @1 :Text;
  flags @2 :UInt32;              # open flags (O_ACCMODE, O_APPEND, O_CLOEXEC, ...)
  position @3 :UInt64;
  kind @4 :Kind;
  pipe @5 :UInt64;               # kind pipe: the pipe's inode (both ends are in this process)
  object @6 :KernelObject;       # kinds eventfd, epoll, timerfd, signalfd (pm/kernel_objects.h)
  unread @7 :Data;               # kind pipe or fifo, a read end: the bytes in it at capture
  carried @8 :UInt32;            # kind regular: 1 + its index in ProcessImage.carried (0: by path)
  socket @9 :UnixSocket;         # kind unixSocket (pm/unix_sockets.h)
  fifoMode @10 :UInt32;          # kind fifo: its permission bits (mkfifo when it is missing)

  enum Kind {
    regular @0;
    characterDevice @1;          # /dev/null, a tty
    directory @2;
    pipe @3;                     # a pipe whose both ends the process holds (unread bytes carried)
    stdio @4;                    # fd 0-2 on a pipe, socket or terminal: whoever restores reconnects it
    eventfd @5;
    epoll @6;
    timerfd @7;
    signalfd @8;
    unixSocket @9;               # one end of a unix socket pair whose both ends the process holds
    fifo @10;                    # a named pipe, held at both ends by the process (`pipe`: its inode)
    inotify @11;
  }
}

# One end of a connected pair of unix sockets (socketpair), both held by the process.
struct UnixSocket {
  inode @0 :UInt64;              # this end (descriptors that share it are one end)
  peer @1 :UInt64;               # the other end's inode
  type @2 :Int32;                # SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
  queue @3 :List(Data);          # what waits to be read at this end, oldest first (one entry
                                 # per datagram or record; a stream's bytes in one or more)
  passCred @4 :Bool;             # SO_PASSCRED
  shutdown @5 :UInt8;            # its sk_shutdown: 1 receive, 2 send (RCV_, SEND_SHUTDOWN)
  receiveTimeoutUs @6 :UInt64;   # SO_RCVTIMEO (0: none)
  sendTimeoutUs @7 :UInt64;      # SO_SNDTIMEO (0: none)
  sendBuffer @8 :UInt32;         # SO_SNDBUF as getsockopt shows it (twice what was asked)
  receiveBuffer @9 :UInt32;      # SO_RCVBUF, likewise
}

# The state of an anonymous-inode object, as /proc/PID/fdinfo shows it.
struct KernelObject {
  count @0 :UInt64;              # eventfd: its counter
  semaphore @1 :Bool;            # eventfd: EFD_SEMAPHORE
  clock @2 :Int32;               # timerfd: its clock
  ticks @3 :UInt64;              # timerfd: expirations not read yet
  remainingNs @4 :UInt64;        # timerfd: until the next expiration (0: disarmed)
  intervalNs @5 :UInt64;         # timerfd: its period (0: one-shot)
  mask @6 :UInt64;               # signalfd: the signals it reads
  watched @7 :List(EpollWatch);  # epoll: its interest list
  inotifyWatches @8 :List(InotifyWatch); # inotify: its watches, by increasing descriptor
}

struct InotifyWatch {
  wd @0 :Int32;                  # the watch descriptor the program was given
  mask @1 :UInt32;               # IN_* events and flags (IN_ONESHOT, IN_EXCL_UNLINK, ...)
  path @2 :Text;                 # the watched inode's path, found at capture
}

struct EpollWatch {
  fd @0 :Int32;                  # the watched descriptor (restored before the epoll)
  events @1 :UInt32;             # EPOLLIN, EPOLLET, ... as registered
  data @2 :UInt64;
}

struct Rlimit {
  resource @0 :UInt32;
  soft @1 :UInt64;
  hard @2 :UInt64;
}

struct SignalState {
  blocked @0 :UInt64;
  handlers @1 :List(SigAction);  # signals whose disposition is not the default
  pending @2 :List(Data);        # siginfo_t of thread-directed queued signals
  pendingShared @3 :List(Data);  # and of process-wide ones
}

struct SigAction {
  signal @0 :UInt32;
  handler @1 :UInt64;            # SIG_IGN = 1, or the handler's address
  flags @2 :UInt64;
  restorer @3 :UInt64;
  mask @4 :UInt64;
}

struct Credentials {
  uid @0 :List(UInt32);          # real, effective, saved, filesystem
  gid @1 :List(UInt32);
  groups @2 :List(UInt32);
}
