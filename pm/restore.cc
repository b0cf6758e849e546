// Rebuilding a process from its image (step 3), in the order the kernel allows it:
//   stub -> scratch page -> stub unmapped -> vDSO moved -> VMAs and memory -> mm fields and exe
//   -> files, cwd, umask, rlimits -> signal handlers, rseq -> pending signals -> credentials
//   -> signal mask, extended state, registers.
// Signals stay blocked in the stub until the very end, so nothing is delivered half-built.
#include "pm/restore.h"

#include <fcntl.h>
#include <linux/prctl.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <linux/sched.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <map>
#include <sstream>

#include "pm/carried_files.h"
#include "pm/job_namespace.h"
#include "pm/fifos.h"
#include "pm/kernel_objects.h"
#include "pm/posix_timers.h"
#include "pm/unix_sockets.h"
#include "pm/proc_info.h"
#include "pm/injected_code.h"
#include "pm/restore_builder.h"
#include "pm/spawn.h"

namespace ferry::pm {
namespace {


std::string hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}


struct StubChild {
  const char* stub;
  const RestoreOptions* options;
  int report;  // where the child writes errno if it cannot exec
  int mount_ns;  // the job's mount namespace to enter first, or -1
};

// The stub's child side, sharing our memory until its exec (pm/spawn.h): system calls only.
int start_stub(void* p) {
  auto* c = static_cast<StubChild*>(p);
  const RestoreOptions& o = *c->options;
  auto fail = [&](int e) {
    [[maybe_unused]] ssize_t n = ::write(c->report, &e, sizeof e);
    return 127;
  };
  if (c->mount_ns >= 0 && ::setns(c->mount_ns, CLONE_NEWNS) != 0) return fail(errno);
  if (o.new_session) ::setsid();
  if (o.die_with_parent && (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() == 1)) return fail(ESRCH);
  int tmp[3];
  for (int i = 0; i < 3; ++i) {
    int src = o.stdio[i] >= 0 ? o.stdio[i] : ::open("/dev/null", O_RDWR);
    tmp[i] = ::fcntl(src, F_DUPFD, 10);
  }
  for (int i = 0; i < 3; ++i) ::dup2(tmp[i], i);
  // Nothing of ours leaks into the restored process; the report pipe closes itself at exec.
  unsigned keep = unsigned(c->report);
  if (keep > 3) ::close_range(3, keep - 1, 0);
  ::close_range(keep + 1, ~0u, 0);
  if (::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return fail(errno);
  char* argv[] = {const_cast<char*>("ferry-restore-stub"), nullptr};
  char* envp[] = {nullptr};
  ::execve(c->stub, argv, envp);
  return fail(errno);
}

// Starts the stub as our child, traced, stopped at its exec: in the job's namespace with the
// image's pid there when options.job is set, else with options.pid if that is free here (else
// any: `pid_kept` says which). CLONE_VM | CLONE_VFORK: the child borrows our address space
// until its exec, instead of copying the page tables of a daemon with large fabric buffers
// (fork cost ~3.5 ms here, inside the freeze).
Result<pid_t> spawn_stub(const std::filesystem::path& stub, const RestoreOptions& o, bool* pid_kept) {
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return make_error(ErrorCode::kUnavailable, errno_message("pipe", errno));
  UniqueFd from_child(report[0]), to_parent(report[1]);
  std::string path = stub.string();
  StubChild child{path.c_str(), &o, to_parent.get(), o.job ? o.job->mount_namespace() : -1};
  constexpr uint64_t kFlags = CLONE_VM | CLONE_VFORK;
  Result<pid_t> pid = make_error(ErrorCode::kUnavailable, "");
  *pid_kept = o.pid > 0;
  if (o.job) {
    pid = o.job->spawn(o.pid, kFlags, start_stub, &child);
  } else {
    pid_t got = spawn({kFlags, o.pid}, start_stub, &child);
    if (got == -EEXIST) {
      *pid_kept = false;
      got = spawn({kFlags, 0}, start_stub, &child);
    }
    pid = got >= 0 ? Result<pid_t>(got)
                   : Result<pid_t>(make_error(ErrorCode::kUnavailable, errno_message("clone3", -got)));
  }
  to_parent.reset();
  if (!pid) return make_error(pid.error().code, "start the restore stub " + path + ": " + pid.error().message);
  // EOF: exec happened (or the child died); a number: why it could not.
  int child_err = 0;
  if (::read(from_child.get(), &child_err, sizeof child_err) == sizeof child_err) {
    ::waitpid(pid.value(), nullptr, 0);
    return make_error(ErrorCode::kUnavailable, errno_message("start the restore stub " + path, child_err));
  }
  return pid;
}

// A free range of `size` bytes that overlaps neither the image's VMAs nor the stub's.
uint64_t find_hole(wire::ProcessImage::Reader image, const std::vector<Vma>& stub, uint64_t size,
                   uint64_t avoid_start = 0, uint64_t avoid_end = 0) {
  auto overlaps = [&](uint64_t a, uint64_t b) {
    for (auto v : image.getVmas())
      if (a < v.getEnd() && v.getStart() < b) return true;
    for (const auto& v : stub)
      if (a < v.end && v.start < b) return true;
    return a < avoid_end && avoid_start < b;
  };
  for (uint64_t at = 0x3e0000000000ull; at > 0x100000000ull; at -= 0x40000000ull)
    if (!overlaps(at, at + size)) return at;
  return 0;
}

bool is_vdso_kind(wire::Vma::Kind k) {
  return k == wire::Vma::Kind::VDSO || k == wire::Vma::Kind::VVAR || k == wire::Vma::Kind::VVAR_VCLOCK;
}

// Moves the stub's [vvar], [vvar_vclock] and [vdso] to where the image had them: first all
// into a free hole, then each to its place, so that overlapping ranges never collide.
Status move_vdso(Builder& b, wire::ProcessImage::Reader image, const std::vector<Vma>& stub_maps, uint64_t hole) {
  std::map<std::string, const Vma*> ours;
  for (const auto& v : stub_maps)
    if (v.path == "[vdso]" || v.path == "[vvar]" || v.path == "[vvar_vclock]") ours[v.path] = &v;
  std::map<std::string, wire::Vma::Reader> theirs;
  for (auto v : image.getVmas())
    if (is_vdso_kind(v.getKind())) theirs.emplace(v.getPath().cStr(), v);
  if (ours.empty()) return Status::Ok();
  uint64_t base = ours.begin()->second->start;
  for (auto& [name, v] : ours) base = std::min(base, v->start);
  std::map<std::string, uint64_t> parked;
  for (auto& [name, v] : ours) {
    uint64_t to = hole + (v->start - base);
    auto r = b.call("park " + name, SYS_mremap, v->start, v->size(), v->size(), MREMAP_MAYMOVE | MREMAP_FIXED, to);
    if (!r) return r.error();
    parked[name] = to;
  }
  for (auto& [name, v] : ours) {
    auto it = theirs.find(name);
    if (it == theirs.end()) {  // the source kernel had no such mapping
      if (auto r = b.call("unmap " + name, SYS_munmap, parked[name], v->size()); !r) return r.error();
      continue;
    }
    uint64_t size = it->second.getEnd() - it->second.getStart();
    if (size != v->size())
      return make_error(ErrorCode::kRefused, "the " + name + " area differs between the nodes (" + std::to_string(size) +
                                                 " bytes there, " + std::to_string(v->size()) + " here): different kernels");
    auto r = b.call("move " + name + " to " + hex(it->second.getStart()), SYS_mremap, parked[name], size, size,
                    MREMAP_MAYMOVE | MREMAP_FIXED, it->second.getStart());
    if (!r) return r.error();
  }
  return Status::Ok();
}

// `carried`: the descriptors of the image's carried files (pm/carried_files.h), by index.
Status map_vmas(Builder& b, wire::ProcessImage::Reader image, const std::vector<int>& carried) {
  // Mappings without a file to open (anonymous memory, thread stacks and their guards, carried
  // files) go in batches; a file's needs its descriptor first, one call at a time.
  std::optional<CallBatch> batch;
  auto flush = [&]() -> Status {
    if (!batch || batch->empty()) return Status::Ok();
    auto r = batch->run(b.tracee());
    batch.reset();
    return r ? Status::Ok() : Status(r.error());
  };
  auto add = [&](std::string what, std::initializer_list<uint64_t> args) -> Status {
    for (int tries = 0; tries < 2; ++tries) {
      if (!batch) batch.emplace(b.batch());
      if (batch->add(what, SYS_mmap, args)) return Status::Ok();
      if (Status s = flush(); !s) return s;
    }
    return make_error(ErrorCode::kInternal, "restore: " + what + ": no room in a batch");
  };
  for (auto v : image.getVmas()) {
    auto kind = v.getKind();
    if (is_vdso_kind(kind) || kind == wire::Vma::Kind::VSYSCALL) continue;
    uint64_t start = v.getStart(), len = v.getEnd() - v.getStart();
    std::string where = "map " + hex(start) + "-" + hex(v.getEnd());
    int share = v.getShared() ? MAP_SHARED : MAP_PRIVATE;
    if (kind == wire::Vma::Kind::SHARED_MEMORY && v.getCarried() == 0) {  // MAP_SHARED anonymous memory
      if (Status s = add(where + " (shared)", {start, len, v.getProt(), uint64_t(MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), uint64_t(-1), 0}); !s)
        return s;
    } else if (v.getCarried() != 0) {
      if (v.getCarried() > carried.size()) return make_error(ErrorCode::kInvalid, "restore: " + where + " names no carried file");
      if (Status s = add(where + " (" + std::string(v.getPath()) + ", carried)",
                         {start, len, v.getProt(), uint64_t(share | MAP_FIXED), uint64_t(carried[v.getCarried() - 1]), v.getOffset()});
          !s)
        return s;
    } else if (kind == wire::Vma::Kind::FILE) {
      if (Status s = flush(); !s) return s;
      std::string path = v.getPath();
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0 || st.st_ino != v.getInode())
        return make_error(ErrorCode::kRefused, "mapped file " + path + (::stat(path.c_str(), &st) != 0 ? " is gone" : " changed since the capture"));
      auto p = b.put_string(path);
      if (!p) return p.error();
      auto fd = b.call("open " + path, SYS_openat, uint64_t(AT_FDCWD), p.value(), O_RDONLY | O_CLOEXEC);
      if (!fd) return fd.error();
      // Shared ones are read-only here (capture checked): writable ones are carried.
      auto m = b.call(where + " (" + path + ")", SYS_mmap, start, len, v.getProt(), uint64_t(share | MAP_FIXED),
                      uint64_t(fd.value()), v.getOffset());
      (void)b.call("close", SYS_close, uint64_t(fd.value()));
      if (!m) return m.error();
    } else {
      int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (v.getGrowsDown() ? MAP_GROWSDOWN : 0);
      if (Status s = add(where, {start, len, v.getProt(), uint64_t(flags), uint64_t(-1), 0}); !s) return s;
    }
  }
  return flush();
}

// The lazy variant: a userfaultfd made by the process itself (it is still privileged here),
// copied out with pidfd_getfd and closed in the process, then set up from our side.
Status register_lazy_ranges(Builder& b, wire::ProcessImage::Reader image, uint64_t features, UniqueFd& out,
                            std::vector<LazyRange>& ranges, uint64_t& pages) {
  auto made = b.call("userfaultfd", SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (!made) return made.error();
  pid_t pid = b.tracee().pid();
  UniqueFd pidfd(int(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return make_error(ErrorCode::kUnavailable, errno_message("restore: pidfd_open", errno));
  UniqueFd uffd(int(::syscall(SYS_pidfd_getfd, pidfd.get(), int(made.value()), 0)));
  int getfd_errno = errno;
  (void)b.call("close the userfaultfd", SYS_close, uint64_t(made.value()));
  if (!uffd) return make_error(ErrorCode::kUnavailable, errno_message("restore: pidfd_getfd of the userfaultfd", getfd_errno));
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = features;
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message("restore: UFFDIO_API (features " + hex(features) + ")", errno));
  for (auto v : image.getVmas()) {
    if (!is_lazy(v)) continue;
    uffdio_register reg{};
    reg.range.start = v.getStart();
    reg.range.len = v.getEnd() - v.getStart();
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) != 0)
      return make_error(ErrorCode::kUnavailable, errno_message("restore: UFFDIO_REGISTER " + hex(v.getStart()) + "-" + hex(v.getEnd()), errno));
    ranges.push_back({v.getStart(), v.getEnd()});
    pages += reg.range.len / kPage;
  }
  out = std::move(uffd);
  return Status::Ok();
}

// The layout of struct prctl_mm_map (linux/prctl.h), spelled out to stay independent of headers.
struct MmMap {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
  uint64_t arg_start, arg_end, env_start, env_end;
  uint64_t auxv;
  uint32_t auxv_size;
  uint32_t exe_fd;
};

Status restore_mm(Builder& b, wire::ProcessImage::Reader image) {
  auto mm = image.getMm();
  auto auxv = image.getAuxv();
  std::vector<std::byte> blob(sizeof(MmMap) + auxv.size());
  int exe_fd = -1;
  std::string exe = image.getExe();
  if (!exe.empty()) {
    auto p = b.put_string(exe);
    if (!p) return p.error();
    auto fd = b.call("open executable " + exe, SYS_openat, uint64_t(AT_FDCWD), p.value(), O_RDONLY | O_CLOEXEC);
    if (fd) exe_fd = int(fd.value());  // without it /proc/PID/exe names the stub: harmless
  }
  MmMap m{mm.getStartCode(), mm.getEndCode(), mm.getStartData(), mm.getEndData(), mm.getStartBrk(), mm.getBrk(),
          mm.getStartStack(), mm.getArgStart(), mm.getArgEnd(), mm.getEnvStart(), mm.getEnvEnd(), 0,
          uint32_t(auxv.size()), uint32_t(exe_fd)};
  // auxv travels right after the struct in the data pages.
  m.auxv = b.data_address() + sizeof(MmMap);
  std::memcpy(blob.data(), &m, sizeof m);
  std::memcpy(blob.data() + sizeof m, auxv.begin(), auxv.size());
  auto addr = b.put(blob.data(), blob.size());
  if (!addr) return addr.error();
  auto r = b.call("PR_SET_MM_MAP", SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, addr.value(), sizeof(MmMap), 0);
  if (exe_fd >= 0) (void)b.call("close", SYS_close, uint64_t(exe_fd));
  if (!r)
    return make_error(r.error().code, r.error().message + " (code " + hex(m.start_code) + "-" + hex(m.end_code) + ", data " +
                                          hex(m.start_data) + "-" + hex(m.end_data) + ", brk " + hex(m.start_brk) + "-" +
                                          hex(m.brk) + ", stack " + hex(m.start_stack) + ", args " + hex(m.arg_start) + "-" +
                                          hex(m.arg_end) + ", env " + hex(m.env_start) + "-" + hex(m.env_end) + ")");
  return Status::Ok();
}

// Pipes whose both ends the process held: made anew, each end put on its descriptors.
Status restore_pipes(Builder& b, wire::ProcessImage::Reader image) {
  int highest = 2;
  for (auto f : image.getFiles()) highest = std::max(highest, int(f.getFd()));
  std::map<uint64_t, std::vector<wire::OpenFile::Reader>> pipes;
  for (auto f : image.getFiles())
    if (f.getKind() == wire::OpenFile::Kind::PIPE) pipes[f.getPipe()].push_back(f);
  for (auto& [inode, ends] : pipes) {
    int fds[2] = {-1, -1};
    auto p = b.put(fds, sizeof fds);
    if (!p) return p.error();
    if (auto r = b.call("pipe", SYS_pipe2, p.value(), O_CLOEXEC); !r) return r.error();
    if (Status s = b.tracee().read_memory(p.value(), std::as_writable_bytes(std::span(fds))); !s) return s;
    // Park both ends above every descriptor the image uses, so no dup3 below hits one of them.
    int parked[2];
    for (int i = 0; i < 2; ++i) {
      auto d = b.call("park a pipe end", SYS_fcntl, uint64_t(fds[i]), F_DUPFD_CLOEXEC, uint64_t(highest + 1));
      if (!d) return d.error();
      parked[i] = int(d.value());
      (void)b.call("close", SYS_close, uint64_t(fds[i]));
    }
    // What was in it goes back in first (once: every read end names the same bytes).
    for (auto f : ends) {
      auto unread = f.getUnread();
      if ((f.getFlags() & O_ACCMODE) != O_RDONLY || unread.size() == 0) continue;
      (void)b.call("size the pipe", SYS_fcntl, uint64_t(parked[1]), F_SETPIPE_SZ, unread.size());
      for (size_t done = 0; done < unread.size();) {
        size_t n = std::min<size_t>(unread.size() - done, (kScratchPages - 1) * kPage);
        auto p = b.put(unread.begin() + done, n);
        if (!p) return p.error();
        auto w = b.call("refill the pipe of fd " + std::to_string(f.getFd()), SYS_write, uint64_t(parked[1]), p.value(), n);
        if (!w) return w.error();
        done += size_t(w.value());
      }
      break;
    }
    for (auto f : ends) {
      bool read_end = (f.getFlags() & O_ACCMODE) == O_RDONLY;
      auto d = b.call("pipe fd " + std::to_string(f.getFd()), SYS_dup3, uint64_t(parked[read_end ? 0 : 1]),
                      uint64_t(f.getFd()), (f.getFlags() & O_CLOEXEC) ? O_CLOEXEC : 0);
      if (!d) return d.error();
      if (f.getFlags() & O_NONBLOCK) (void)b.call("fcntl", SYS_fcntl, uint64_t(f.getFd()), F_SETFL, O_NONBLOCK);
    }
    (void)b.call("close", SYS_close, uint64_t(parked[0]));
    (void)b.call("close", SYS_close, uint64_t(parked[1]));
  }
  return Status::Ok();
}

Status restore_files(Builder& b, wire::ProcessImage::Reader image, const std::vector<int>& carried) {
  bool have[3] = {false, false, false};
  for (auto f : image.getFiles()) {
    int fd = f.getFd();
    if (fd >= 0 && fd <= 2) have[fd] = true;
    std::string path = f.getPath();
    auto kind = f.getKind();
    if (kind != wire::OpenFile::Kind::REGULAR && kind != wire::OpenFile::Kind::DIRECTORY &&
        kind != wire::OpenFile::Kind::CHARACTER_DEVICE)
      continue;  // stdio, pipes and kernel objects: below
    uint32_t flags = f.getFlags() & ~uint32_t(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
    if (f.getCarried() != 0) {  // its own open of the carried copy, through the copy's descriptor
      if (f.getCarried() > carried.size()) return make_error(ErrorCode::kInvalid, "restore: fd " + std::to_string(fd) + " names no carried file");
      path = "/proc/self/fd/" + std::to_string(carried[f.getCarried() - 1]);
    }
    auto p = b.put_string(path);
    if (!p) return p.error();
    auto opened = b.call("reopen fd " + std::to_string(fd) + " (" + path + ")", SYS_openat, uint64_t(AT_FDCWD),
                         p.value(), flags, 0);
    if (!opened) return opened.error();
    if (Status s = b.move_fd(opened.value(), fd, flags & O_CLOEXEC, path); !s) return s;
    if (f.getKind() == wire::OpenFile::Kind::REGULAR) {
      auto s = b.call("seek fd " + std::to_string(fd), SYS_lseek, uint64_t(fd), f.getPosition(), SEEK_SET);
      if (!s) return s.error();
    }
  }
  for (int fd = 0; fd <= 2; ++fd)
    if (!have[fd]) (void)b.call("close", SYS_close, uint64_t(fd));
  if (Status s = restore_pipes(b, image); !s) return s;
  if (Status s = restore_fifos(b, image); !s) return s;
  if (Status s = restore_unix_sockets(b, image); !s) return s;
  if (Status s = restore_kernel_objects(b, image); !s) return s;
  if (std::string cwd = image.getCwd(); !cwd.empty()) {
    auto p = b.put_string(cwd);
    if (!p) return p.error();
    if (auto r = b.call("chdir " + cwd, SYS_chdir, p.value()); !r) return r.error();
  }
  (void)b.call("umask", SYS_umask, image.getUmask());
  for (auto l : image.getRlimits()) {
    rlimit lim{l.getSoft(), l.getHard()};
    auto p = b.put(&lim, sizeof lim);
    if (!p) return p.error();
    (void)b.tracee().syscall(SYS_prlimit64, 0, l.getResource(), p.value(), 0);  // raising a hard limit may be refused
  }
  return Status::Ok();
}

struct KernelSigaction {
  uint64_t handler, flags, restorer, mask;
};

// Queues signals (a siginfo_t each) in the rebuilt process, `self` (its pid as it sees it): to
// its thread `tid` as it sees it (from that thread: b's), or process-wide for tid 0 (from the
// leader).
Status queue_signals(Builder& b, pid_t self, pid_t tid, capnp::List<capnp::Data>::Reader infos) {
  for (auto info : infos) {
    siginfo_t si{};
    std::memcpy(&si, info.begin(), std::min(sizeof si, size_t(info.size())));
    auto p = b.put(&si, sizeof si);
    if (!p) return p.error();
    auto r = tid == 0 ? b.call("queue signal", SYS_rt_sigqueueinfo, uint64_t(self), uint64_t(si.si_signo), p.value())
                      : b.call("queue signal", SYS_rt_tgsigqueueinfo, uint64_t(self), uint64_t(tid),
                               uint64_t(si.si_signo), p.value());
    if (!r) return r.error();
  }
  return Status::Ok();
}

// Signal handlers and the leader's rseq, in one batch.
Status restore_handlers_and_rseq(Builder& b, wire::ProcessImage::Reader image) {
  CallBatch batch = b.batch();
  for (auto h : image.getSignals().getHandlers()) {
    KernelSigaction a{h.getHandler(), h.getFlags(), h.getRestorer(), h.getMask()};
    uint64_t at = batch.data(&a, sizeof a);
    if (!at || !batch.add("sigaction " + std::to_string(h.getSignal()), SYS_rt_sigaction, {h.getSignal(), at, 0, 8}))
      return make_error(ErrorCode::kInvalid, "restore: too many signal handlers");
  }
  auto rseq = image.getRseq();
  if (rseq.getAddress() != 0) batch.add("rseq", SYS_rseq, {rseq.getAddress(), rseq.getLength(), 0, rseq.getSignature()});
  if (batch.empty()) return Status::Ok();
  auto r = batch.run(b.tracee());
  return r ? Status::Ok() : Status(r.error());
}

// Pending signals are queued by the process to itself, each thread's by the thread itself (only
// so may a signal with any si_code, such as pthread_kill's SI_TKILL, be queued), while every
// signal is still blocked: last of all, and not from the code page, whose calls each end in a
// SIGSTOP (which would discard a pending SIGCONT). `threads`: the threads but the leader, in
// the image's order, each with a syscall site; `tids`: as the process sees them, leader first.
Status queue_pending_signals(Builder& b, wire::ProcessImage::Reader image, const std::vector<Tracee*>& threads,
                             const std::vector<pid_t>& tids) {
  auto sigs = image.getSignals();
  pid_t self = tids.at(0);
  if (Status s = queue_signals(b, self, self, sigs.getPending()); !s) return s;
  if (Status s = queue_signals(b, self, 0, sigs.getPendingShared()); !s) return s;
  auto in_image = image.getThreads();
  for (uint32_t i = 1; i < in_image.size() && i < tids.size() && i - 1 < threads.size(); ++i) {
    if (in_image[i].getPending().size() == 0) continue;
    Builder tb(*threads[i - 1], b.data_address());
    if (Status s = queue_signals(tb, self, tids[i], in_image[i].getPending()); !s) return s;
  }
  return Status::Ok();
}

// A thread's credentials (each thread has its own; glibc's setuid makes every thread call
// it), as calls added to its batch; nothing for root. False if the batch's area is full.
bool add_credentials(CallBatch& batch, wire::ProcessImage::Reader image) {
  auto c = image.getCreds();
  if (c.getUid().size() < 4 || c.getGid().size() < 4) return true;
  bool root = c.getUid()[0] == 0 && c.getUid()[1] == 0 && c.getUid()[2] == 0 && c.getGid()[0] == 0 &&
              c.getGid()[1] == 0 && c.getGid()[2] == 0 && c.getGroups().size() == 0;
  if (root) return true;
  std::vector<uint32_t> groups;
  for (uint32_t g : c.getGroups()) groups.push_back(g);
  uint64_t at = batch.data(groups.data(), groups.size() * sizeof(uint32_t));
  return (at || groups.empty()) && batch.add("setgroups", SYS_setgroups, {groups.size(), at}) &&
         batch.add("setresgid", SYS_setresgid, {c.getGid()[0], c.getGid()[1], c.getGid()[2]}) &&
         batch.add("setresuid", SYS_setresuid, {c.getUid()[0], c.getUid()[1], c.getUid()[2]});
}

Status restore_cpu(Tracee& t, capnp::Data::Reader raw, capnp::Data::Reader xs, uint64_t blocked) {
  user_regs_struct regs{};
  if (raw.size() != sizeof regs) return make_error(ErrorCode::kInvalid, "the image's registers have the wrong size");
  std::memcpy(&regs, raw.begin(), sizeof regs);
  // Stopped inside a syscall that the kernel would restart: run it again with its original
  // arguments (they are still in the registers). For ERESTART_RESTARTBLOCK (-516, e.g.
  // clock_nanosleep) the kernel's restart block stayed behind on the source, so the original
  // call is re-issued rather than restart_syscall: a relative sleep starts over.
  long rax = long(regs.rax), orig = long(regs.orig_rax);
  if (orig == SYS_restart_syscall && rax == -516) {
    // Inside restart_syscall (the process was stopped and continued before, by someone else
    // than Ferry, whose detach re-issues the call): which call it continues stayed in the
    // source kernel's restart block. It returns EINTR, as restart_syscall would here.
    regs.rax = uint64_t(-EINTR);
  } else if ((orig >= 0 && (rax == -512 || rax == -513 || rax == -514)) || reissue_after_freeze(regs)) {
    regs = reissued(regs);
  }
  regs.orig_rax = uint64_t(-1);
  if (Status s = t.set_xstate(std::span(reinterpret_cast<const std::byte*>(xs.begin()), xs.size())); !s) return s;
  if (Status s = t.set_blocked_signals(blocked); !s) return s;
  return t.set_regs(regs);
}

// What a thread has of its own that only it can set (run in it): rseq (not the leader's:
// restore_handlers_and_rseq did it), alternate stack, robust list, clear_child_tid (the leader's
// only: clone3 sets the others'), name (unless it has the one it was born with, `inherited`).
// Added to its batch; false if the batch's area is full.
bool add_thread_extras(CallBatch& batch, wire::Thread::Reader th, bool leader, const std::string& inherited = {}) {
  auto rseq = th.getRseq();
  if (!leader && rseq.getAddress() != 0 &&
      !batch.add("rseq", SYS_rseq, {rseq.getAddress(), rseq.getLength(), 0, rseq.getSignature()}))
    return false;
  auto alt = th.getAltStack();
  if (alt.getBase() != 0 || alt.getSize() != 0) {
    stack_t ss{};
    ss.ss_sp = reinterpret_cast<void*>(alt.getBase());
    ss.ss_size = alt.getSize();
    ss.ss_flags = int(alt.getFlags() & ~uint32_t(SS_ONSTACK));
    if (!(ss.ss_flags & SS_DISABLE)) {
      uint64_t at = batch.data(&ss, sizeof ss);
      if (!at || !batch.add("sigaltstack", SYS_sigaltstack, {at, 0})) return false;
    }
  }
  if (th.getRobustList() != 0 &&
      !batch.add("set_robust_list", SYS_set_robust_list, {th.getRobustList(), th.getRobustListLength()}))
    return false;
  if (leader && !batch.add("set_tid_address", SYS_set_tid_address, {th.getClearChildTid()})) return false;
  if (th.getName().size() > 0 && th.getName() != inherited) {
    std::string name = th.getName();
    uint64_t at = batch.data(name.c_str(), name.size() + 1);
    if (!at || !batch.add("name the thread", SYS_prctl, {PR_SET_NAME, at})) return false;
  }
  return true;
}

}  // namespace

// Step 9b: the threads. The leader makes them all by injected clone3 calls, in batches (with
// each its tid, by set_tid, where RestoreOptions keeps the pid); each is taken as it starts
// (PTRACE_O_TRACECLONE: it never runs a single instruction of its own before its registers are
// set). Then every thread runs, at once, its own batch of what only it can set, and its
// credentials, from a page of its own in the scratch area (`thread_pages`, one per thread but
// the leader). The stops and the tracer's ptrace calls around each, not the calls themselves,
// are what a thread costs (docs/CAPTURE-RESTORE.md, "Cost").
struct ThreadRestorer {
  RestoredProcess& proc;
  Builder& b;
  wire::ProcessImage::Reader image;
  const RestoreOptions& options;
  uint64_t thread_pages;
  std::vector<pid_t> tids_seen;  // each thread's tid as the process sees it, the leader's first

  Status run(pid_t self, bool* tids_kept) {
    tids_seen = {self};
    auto threads = image.getThreads();
    auto schedule = [&](pid_t tid, wire::Thread::Reader th) {
      RestoredProcess::Scheduling s{tid, th.getPolicy(), th.getPriority(), th.getNice(), {}};
      auto a = th.getAffinity();
      s.affinity.assign(reinterpret_cast<const std::byte*>(a.begin()), reinterpret_cast<const std::byte*>(a.end()));
      proc.scheduling_.push_back(std::move(s));
    };
    if (threads.size() == 0) return Status::Ok();  // an image from before threads moved
    {
      CallBatch leader = b.batch();
      if (!add_thread_extras(leader, threads[0], true)) return make_error(ErrorCode::kInvalid, "restore: the leader's extras do not fit");
      if (auto r = leader.run(*proc.tracee_); !r) return r.error();
    }
    schedule(proc.tracee_->pid(), threads[0]);
    if (threads.size() == 1) return Status::Ok();
    if (Status s = proc.tracee_->set_trace_clone(true); !s) return s;
    if (Status s = make_threads(threads, tids_kept); !s) return s;
    if (Status s = proc.tracee_->set_trace_clone(false); !s) return s;
    // Each its own batch, all running at once.
    std::vector<CallBatch> batches;
    for (uint32_t i = 1; i < threads.size(); ++i) {
      batches.emplace_back(thread_pages + (i - 1) * kPage, kPage);
      if (!add_thread_extras(batches.back(), threads[i], false, threads[0].getName()) || !add_credentials(batches.back(), image))
        return make_error(ErrorCode::kInvalid, "restore: what thread " + std::to_string(threads[i].getTid()) +
                                                   " must set does not fit in its page (too many groups?)");
    }
    std::vector<Tracee*> each;
    for (auto& t : proc.threads_) each.push_back(t.get());
    if (auto r = run_at_once(batches, each); !r) return r.error();
    for (uint32_t i = 1; i < threads.size(); ++i) schedule(proc.threads_[i - 1]->pid(), threads[i]);
    return Status::Ok();
  }

  // The clone3 calls, as many to a batch as the data pages hold. A tid taken on this machine
  // (only possible outside a job) is made again with any tid.
  Status make_threads(capnp::List<wire::Thread>::Reader threads, bool* tids_kept) {
    struct Args {
      clone_args args;
      pid_t tid;
    };
    auto args_for = [&](wire::Thread::Reader th, pid_t want, uint64_t at) {
      Args a{};
      a.args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
      if (th.getClearChildTid() != 0) {  // no set_tid_address to run in it
        a.args.flags |= CLONE_CHILD_CLEARTID;
        a.args.child_tid = th.getClearChildTid();
      }
      a.tid = want;
      if (want > 0) {
        a.args.set_tid = at + offsetof(Args, tid);
        a.args.set_tid_size = 1;
      }
      return a;
    };
    for (uint32_t i = 1; i < threads.size();) {
      CallBatch batch = b.batch();
      uint32_t first = i;
      for (; i < threads.size(); ++i) {
        pid_t want = options.pid == 0 ? 0 : pid_t(options.job ? threads[i].getTidInJob() : threads[i].getTid());
        Args a = args_for(threads[i], want, batch.next_data_address());  // set_tid points into it
        uint64_t at = batch.data(&a, sizeof a);
        if (!at || !batch.add("clone3 (a thread)", SYS_clone3, {at, sizeof(clone_args)}, /*may_fail=*/true)) break;
      }
      if (i == first) return make_error(ErrorCode::kInternal, "restore: no room for a clone3 call");
      auto made = batch.run(*proc.tracee_);
      if (!made) return made.error();
      const auto& r = made.value();
      std::vector<pid_t> host(r.size()), seen(r.size());
      for (size_t k = 0; k < r.size(); ++k)  // the new threads, in the order they were made
        if (r[k] >= 0) {
          seen[k] = pid_t(r[k]);
          host[k] = proc.tracee_->take_new_thread();
        }
      for (size_t k = 0; k < r.size(); ++k) {
        if (r[k] >= 0) continue;
        if (r[k] != -EEXIST) return make_error(ErrorCode::kUnavailable, std::string("restore: clone3 (a thread): ") + std::strerror(int(-r[k])));
        auto th = threads[first + uint32_t(k)];
        if (options.job) return make_error(ErrorCode::kRefused, "restore: tid " + std::to_string(th.getTidInJob()) + " is taken");
        *tids_kept = false;  // taken on this machine: any tid
        Args a = args_for(th, 0, b.data_address());
        auto at = b.put(&a, sizeof a);
        if (!at) return at.error();
        auto one = b.call("clone3 (a thread)", SYS_clone3, at.value(), sizeof(clone_args));
        if (!one) return one.error();
        seen[k] = pid_t(one.value());
        host[k] = proc.tracee_->take_new_thread();
      }
      for (size_t k = 0; k < r.size(); ++k) {
        if (host[k] <= 0) return make_error(ErrorCode::kInternal, "restore: clone3 made a thread nobody saw start");
        auto t = Tracee::adopt_new_thread(host[k]);
        if (!t) return t.error();
        t.value()->set_code_page(proc.tracee_->code_page());
        proc.threads_.push_back(std::move(t).value());
        tids_seen.push_back(seen[k]);
      }
    }
    return Status::Ok();
  }
};

bool is_lazy(wire::Vma::Reader v) {
  auto k = v.getKind();
  return k == wire::Vma::Kind::SHARED_MEMORY ||
         (!v.getShared() && (k == wire::Vma::Kind::ANONYMOUS || k == wire::Vma::Kind::HEAP || k == wire::Vma::Kind::STACK));
}

std::vector<uint64_t> pages_written_by_restore(wire::ProcessImage::Reader image) {
  std::vector<uint64_t> pages;
  auto add = [&](wire::Rseq::Reader rseq) {
    if (rseq.getAddress() != 0 && rseq.getLength() != 0)
      for (uint64_t p = rseq.getAddress() & ~(kPage - 1); p < rseq.getAddress() + rseq.getLength(); p += kPage)
        pages.push_back(p);
  };
  add(image.getRseq());
  for (auto th : image.getThreads()) add(th.getRseq());  // the leader's entry has none
  std::sort(pages.begin(), pages.end());
  pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
  return pages;
}

std::vector<LazyRange> ranges_to_serve(wire::ProcessImage::Reader image) {
  auto eager = pages_written_by_restore(image);
  std::vector<LazyRange> out;
  for (auto v : image.getVmas()) {
    if (!is_lazy(v)) continue;
    uint64_t at = v.getStart();
    for (uint64_t p : eager)
      if (p >= at && p < v.getEnd()) {
        if (p > at) out.push_back({at, p});
        at = p + kPage;
      }
    if (at < v.getEnd()) out.push_back({at, v.getEnd()});
  }
  return out;
}

Result<std::unique_ptr<RestoredProcess>> RestoredProcess::build(wire::ProcessImage::Reader image, const PageFeed& pages,
                                                                const RestoreOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  std::filesystem::path stub = options.stub;
  if (stub.empty()) stub = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "ferry-restore-stub";
  if (image.getPageSize() != kPage)
    return make_error(ErrorCode::kRefused, "the image has pages of " + std::to_string(image.getPageSize()) + " bytes");
  bool pid_kept = false;
  auto spawned = spawn_stub(stub, options, &pid_kept);
  if (!spawned) return spawned.error();
  pid_t pid = spawned.value();
  auto adopted = Tracee::adopt_exec_stopped_child(pid);
  if (!adopted) return adopted.error();
  std::unique_ptr<RestoredProcess> proc(new RestoredProcess(std::move(adopted).value()));
  Tracee& t = *proc->tracee_;
  SameCpu pinned(pid);
  auto fail = [&](const Error& e) -> Result<std::unique_ptr<RestoredProcess>> {
    proc->kill_all();
    return e;
  };

  // Nothing is delivered to a half-built process.
  if (Status s = t.set_blocked_signals(~0ull); !s) return fail(s.error());
  auto stub_maps = read_maps(pid);
  if (!stub_maps) return fail(stub_maps.error());
  auto site = find_syscall_site(pid);
  if (!site) return fail(site.error());
  t.set_syscall_site(site.value());

  // A scratch area of our own, then the stub's own image and stack go.
  const uint64_t scratch_bytes = (kScratchPages + std::max<uint64_t>(image.getThreads().size(), 1) - 1) * kPage;
  uint64_t scratch = find_hole(image, stub_maps.value(), scratch_bytes);
  if (!scratch) return fail(make_error(ErrorCode::kUnavailable, "restore: no free address range for the scratch area"));
  auto m = t.syscall(SYS_mmap, scratch, scratch_bytes, PROT_READ | PROT_WRITE | PROT_EXEC,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, uint64_t(-1), 0);
  if (!m || uint64_t(m.value()) != scratch) return fail(make_error(ErrorCode::kUnavailable, "restore: cannot map the scratch area"));
  if (Status s = t.write_memory(scratch, injected_code()); !s) return fail(s.error());
  t.set_code_page(scratch);
  Builder b(t, scratch + kPage);
  for (const auto& v : stub_maps.value()) {
    if (v.path == "[vdso]" || v.path == "[vvar]" || v.path == "[vvar_vclock]" || v.path == "[vsyscall]") continue;
    if (auto r = b.call("unmap the stub's " + (v.path.empty() ? hex(v.start) : v.path), SYS_munmap, v.start, v.size()); !r)
      return fail(r.error());
  }
  uint64_t vdso_hole = find_hole(image, stub_maps.value(), 64 * kPage, scratch, scratch + scratch_bytes);
  if (Status s = move_vdso(b, image, stub_maps.value(), vdso_hole); !s) return fail(s.error());

  // Carried files first (their mappings and descriptors use them), then the address space and
  // its contents.
  std::vector<int> carried;
  if (image.getCarried().size() > 0) {
    if (!options.carried) return fail(make_error(ErrorCode::kInvalid, "restore: the image carries files whose contents did not come"));
    int lowest = 3;
    for (auto f : image.getFiles()) lowest = std::max(lowest, int(f.getFd()) + 1);
    auto opened = open_carried(b, image, *options.carried, lowest, proc->stats_.notes);
    if (!opened) return fail(opened.error());
    carried = std::move(opened).value();
  }
  if (Status s = map_vmas(b, image, carried); !s) return fail(s.error());
  uint64_t written = 0;
  std::vector<uint64_t> must_have = options.lazy ? pages_written_by_restore(image) : std::vector<uint64_t>{};
  std::vector<bool> have(must_have.size());
  Status filled = pages([&](uint64_t address, std::span<const std::byte> bytes) {
    written += bytes.size() / kPage;
    for (size_t i = 0; i < must_have.size(); ++i)
      have[i] = have[i] || (must_have[i] >= address && must_have[i] < address + bytes.size());
    return t.write_memory(address, bytes);
  });
  if (!filled) return fail(filled.error());
  proc->stats_.pages_written = written;
  for (size_t i = 0; i < must_have.size(); ++i)
    if (!have[i])
      return fail(make_error(ErrorCode::kInvalid, "restore: the page feed did not supply page " + hex(must_have[i]) +
                                                      " (rseq area), which the kernel writes before the process runs"));
  if (options.lazy) {
    Status s = register_lazy_ranges(b, image, options.uffd_features, proc->uffd_, proc->lazy_ranges_,
                                     proc->stats_.lazy_pages);
    if (!s) return fail(s.error());
  }

  if (Status s = restore_mm(b, image); !s) return fail(s.error());
  if (Status s = restore_files(b, image, carried); !s) return fail(s.error());
  if (Status s = close_carried(b, image, carried); !s) return fail(s.error());
  // Its pid as it sees it (the calls it makes on itself name it so): in a job's namespace that
  // is not ours.
  pid_t self = pid;
  if (options.job) {
    auto ns = namespace_pids(pid);
    if (!ns) return fail(ns.error());
    self = ns.value().back();
  }
  if (Status s = restore_handlers_and_rseq(b, image); !s) return fail(s.error());
  for (auto t : image.getItimers()) {  // armed again with the time they had left
    itimerval v{};
    v.it_value = {time_t(t.getValueUs() / 1000000), suseconds_t(t.getValueUs() % 1000000)};
    v.it_interval = {time_t(t.getIntervalUs() / 1000000), suseconds_t(t.getIntervalUs() % 1000000)};
    auto p = b.put(&v, sizeof v);
    if (!p) return fail(p.error());
    if (auto r = b.call("setitimer " + std::to_string(t.getWhich()), SYS_setitimer, uint64_t(t.getWhich()), p.value(), 0); !r)
      return fail(r.error());
  }
  ThreadRestorer threads{*proc, b, image, options, scratch + kScratchPages * kPage, {}};
  if (Status s = threads.run(self, &pid_kept); !s) return fail(s.error());
  // POSIX timers, once their threads exist.
  if (Status s = restore_posix_timers(b, image, threads.tids_seen); !s) return fail(s.error());
  {  // The leader's credentials (its threads set theirs).
    CallBatch creds = b.batch();
    if (!add_credentials(creds, image)) return fail(make_error(ErrorCode::kInvalid, "restore: too many groups"));
    if (auto r = creds.run(t); !r) return fail(r.error());
  }

  // The last injected calls queue the pending signals and remove the scratch area, from a
  // syscall instruction of the restored process's own (its vDSO has one).
  auto own_site = find_syscall_site(pid);
  if (!own_site) return fail(own_site.error());
  t.set_syscall_site(own_site.value());
  t.set_code_page(0);
  {
    std::vector<Tracee*> others;
    for (auto& th : proc->threads_) {
      th->set_code_page(0);
      th->set_syscall_site(own_site.value());
      others.push_back(th.get());
    }
    if (Status s = queue_pending_signals(b, image, others, threads.tids_seen); !s) return fail(s.error());
  }
  if (auto r = b.call("unmap the scratch area", SYS_munmap, scratch, scratch_bytes); !r) return fail(r.error());
  proc->leader_exits_ = image.getLeaderExited();
  if (image.getLeaderExited()) {
    // Its leader had called pthread_exit: it calls exit again, first thing, and stays a zombie
    // while its threads run (every signal blocked: none lands on it meanwhile).
    auto regs = t.regs();
    if (!regs) return fail(regs.error());
    user_regs_struct r = regs.value();
    r.rip = own_site.value();
    r.rax = SYS_exit;
    r.rdi = 0;
    r.orig_rax = uint64_t(-1);
    if (Status s = t.set_regs(r); !s) return fail(s.error());
  } else if (Status s = restore_cpu(t, image.getRegs(), image.getXstate(), image.getSignals().getBlocked()); !s) {
    return fail(s.error());
  }
  for (size_t i = 0; i < proc->threads_.size(); ++i) {
    auto th = image.getThreads()[uint32_t(i + 1)];
    if (Status s = restore_cpu(*proc->threads_[i], th.getRegs(), th.getXstate(), th.getBlocked()); !s) return fail(s.error());
  }

  proc->stats_.injected_syscalls = t.injected_syscalls();
  proc->stats_.pid_kept = pid_kept;
  proc->stats_.build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return proc;
}

RestoredProcess::~RestoredProcess() {
  if (!started_ && tracee_) kill_all();
}

void RestoredProcess::kill_all() {
  ::kill(tracee_->pid(), SIGKILL);
  for (auto& th : threads_) th->kill();
  tracee_->kill();
}

Status RestoredProcess::start() {
  for (const auto& s : scheduling_) {
    // Best effort: a real-time policy or an affinity this node cannot give is left as it is.
    if (!s.affinity.empty()) (void)::sched_setaffinity(s.tid, s.affinity.size(), reinterpret_cast<const cpu_set_t*>(s.affinity.data()));
    (void)::setpriority(PRIO_PROCESS, id_t(s.tid), s.nice);
    if (s.policy != SCHED_OTHER) {
      sched_param p{};
      p.sched_priority = s.priority;
      (void)::sched_setscheduler(s.tid, s.policy, &p);
    }
  }
  if (leader_exits_) {
    // The leader goes first and is a zombie again before any thread runs: none of them may
    // see it alive (bounded: it has one system call to make).
    if (Status s = tracee_->detach(); !s) return s;
    for (int i = 0; i < 20000 && !leader_exited(tracee_->pid()); ++i) ::usleep(50);
  }
  for (auto& th : threads_)
    if (Status s = th->detach(); !s) return s;
  if (!leader_exits_)
    if (Status s = tracee_->detach(); !s) return s;
  started_ = true;
  return Status::Ok();
}

}  // namespace ferry::pm
