#include "pm/fifos.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "dipc/unique_fd.h"
#include "pm/restore_builder.h"

namespace ferry::pm {
namespace {

std::string fd_name(int fd) { return "fd " + std::to_string(fd); }

bool reads(uint32_t flags) {
  return (flags & O_ACCMODE) == O_RDONLY || (flags & O_ACCMODE) == O_RDWR;
}
bool writes(uint32_t flags) {
  return (flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR;
}

}  // namespace

Result<std::string> peek_pipe(pid_t pid, int fd) {
  std::string where = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  UniqueFd src(::open(where.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!src) return make_error(ErrorCode::kUnavailable, errno_message("open " + where, errno));
  int unread = 0;
  ::ioctl(src.get(), FIONREAD, &unread);
  std::string out;
  if (unread <= 0) return out;
  int tmp[2];
  if (::pipe2(tmp, O_NONBLOCK | O_CLOEXEC) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message("pipe", errno));
  UniqueFd tmp_read(tmp[0]), tmp_write(tmp[1]);
  ::fcntl(tmp[1], F_SETPIPE_SZ, unread);  // room for all of it
  ssize_t n = ::tee(src.get(), tmp[1], size_t(unread), SPLICE_F_NONBLOCK);
  if (n > 0) {
    out.resize(size_t(n));
    ssize_t r = ::read(tmp[0], out.data(), out.size());
    out.resize(r > 0 ? size_t(r) : 0);
  }
  if (out.size() != size_t(unread))
    return make_error(ErrorCode::kUnavailable, fd_name(fd) + ": could read only " +
                                                   std::to_string(out.size()) + " of the " +
                                                   std::to_string(unread) + " bytes in the pipe");
  return out;
}

bool is_fifo(const OpenFd& f) {
  return S_ISFIFO(f.mode) && !f.target.empty() && f.target.front() == '/';
}

Status check_fifo(const OpenFd& f, const std::vector<OpenFd>& fds) {
  bool r = false, w = false;
  for (const auto& g : fds)
    if (is_fifo(g) && g.inode == f.inode) {
      r = r || reads(g.flags);
      w = w || writes(g.flags);
    }
  if (!r || !w)
    return make_error(
        ErrorCode::kRefused,
        fd_name(f.fd) + " is a FIFO (" + f.target + ") this process holds open for " +
            (r ? "reading" : "writing") +
            " only: its other end is another process's; only FIFOs held at both ends move");
  return Status::Ok();
}

Status capture_fifo(pid_t pid, const OpenFd& f, wire::OpenFile::Builder out) {
  out.setKind(wire::OpenFile::Kind::FIFO);
  out.setPipe(f.inode);
  out.setFifoMode(f.mode & 07777);
  if (!reads(f.flags)) return Status::Ok();
  auto unread = peek_pipe(pid, f.fd);
  if (!unread) return unread.error();
  if (!unread.value().empty())
    out.setUnread(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(unread.value().data()),
                                      unread.value().size()));
  return Status::Ok();
}

namespace {

// Opens the FIFO of `ends` in the process, read and write (which never blocks), made with its
// mode if it is missing: the anchor that keeps its buffer while the ends are opened.
Result<long> open_anchor(Builder& b, wire::OpenFile::Reader first) {
  std::string path = first.getPath();
  const std::string what = fd_name(first.getFd()) + " (FIFO " + path + ")";
  auto p = b.put_string(path);
  if (!p) return p.error();
  auto anchor = b.tracee().syscall(SYS_openat, uint64_t(AT_FDCWD), p.value(),
                                   O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
  if (!anchor) return anchor.error();
  if (anchor.value() == -ENOENT) {
    if (auto r = b.call("mkfifo " + path + " for " + fd_name(first.getFd()), SYS_mknodat,
                        uint64_t(AT_FDCWD), p.value(), S_IFIFO | first.getFifoMode(), 0);
        !r)
      return r.error();
    auto made = b.call("open " + what, SYS_openat, uint64_t(AT_FDCWD), p.value(),
                       O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
    if (!made) return made.error();
    (void)b.call("chmod " + path, SYS_fchmod, uint64_t(made.value()),
                 first.getFifoMode());  // past the umask
    return made.value();
  }
  if (anchor.value() < 0)
    return make_error(ErrorCode::kUnavailable,
                      "restore: open " + what + ": " + std::strerror(int(-anchor.value())));
  return anchor.value();
}

// Puts the captured bytes in the FIFO behind `anchor`, unless it holds them already.
Status refill(Builder& b, long anchor, wire::OpenFile::Reader first, capnp::Data::Reader unread) {
  const std::string what =
      fd_name(first.getFd()) + " (FIFO " + std::string(first.getPath().cStr()) + ")";
  pid_t pid = b.tracee().pid();
  struct stat st {};
  if (::stat(("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(anchor)).c_str(), &st) !=
          0 ||
      !S_ISFIFO(st.st_mode))
    return make_error(ErrorCode::kRefused, "restore: " + what + " is not a FIFO here");
  auto there = peek_pipe(pid, int(anchor));
  if (!there) return there.error();
  std::string want(reinterpret_cast<const char*>(unread.begin()), unread.size());
  if (there.value() == want) return Status::Ok();  // the same FIFO, still held by the frozen source
  if (!there.value().empty())
    return make_error(ErrorCode::kRefused, "restore: " + what + " holds " +
                                               std::to_string(there.value().size()) +
                                               " bytes that are not the ones captured");
  (void)b.call("size the FIFO", SYS_fcntl, uint64_t(anchor), F_SETPIPE_SZ, unread.size());
  for (size_t done = 0; done < unread.size();) {
    size_t n = std::min<size_t>(unread.size() - done, (kScratchPages - 1) * kPage);
    auto p = b.put(unread.begin() + done, n);
    if (!p) return p.error();
    auto w = b.call("refill " + what, SYS_write, uint64_t(anchor), p.value(), n);
    if (!w) return w.error();
    done += size_t(w.value());
  }
  return Status::Ok();
}

Status restore_fifo(Builder& b, const std::vector<wire::OpenFile::Reader>& ends, int highest) {
  auto opened = open_anchor(b, ends.front());
  if (!opened) return opened.error();
  // Parked above every descriptor the image uses, so that placing an end cannot close it (and
  // the FIFO's bytes with it).
  auto anchor = b.call("park the FIFO", SYS_fcntl, uint64_t(opened.value()), F_DUPFD_CLOEXEC,
                       uint64_t(highest + 1));
  (void)b.call("close", SYS_close, uint64_t(opened.value()));
  if (!anchor) return anchor.error();
  Status st = Status::Ok();
  capnp::Data::Reader unread;
  for (auto f : ends)
    if (f.getUnread().size() > 0) unread = f.getUnread();
  st = refill(b, anchor.value(), ends.front(), unread);
  for (auto f : ends) {
    if (!st) break;
    std::string path = f.getPath();
    auto p = b.put_string(path);
    if (!p) return p.error();
    // O_NONBLOCK: a writer's open would wait for a reader, or fail without one; the anchor is
    // one. The descriptor's own flags are set after.
    uint32_t flags = (f.getFlags() & ~uint32_t(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)) | O_NONBLOCK;
    auto opened = b.call("reopen " + fd_name(f.getFd()) + " (FIFO " + path + ")", SYS_openat,
                         uint64_t(AT_FDCWD), p.value(), flags, 0);
    if (!opened) {
      st = opened.error();
      break;
    }
    st = b.move_fd(opened.value(), f.getFd(), f.getFlags() & O_CLOEXEC, path);
    if (st)
      if (auto r = b.call("flags of " + fd_name(f.getFd()), SYS_fcntl, uint64_t(f.getFd()), F_SETFL,
                          f.getFlags());
          !r)
        st = r.error();
  }
  (void)b.call("close", SYS_close, uint64_t(anchor.value()));
  return st;
}

}  // namespace

Status restore_fifos(Builder& b, wire::ProcessImage::Reader image) {
  int highest = 2;
  for (auto f : image.getFiles()) highest = std::max(highest, int(f.getFd()));
  std::map<uint64_t, std::vector<wire::OpenFile::Reader>> fifos;  // by inode at capture
  for (auto f : image.getFiles())
    if (f.getKind() == wire::OpenFile::Kind::FIFO) fifos[f.getPipe()].push_back(f);
  for (auto& [inode, ends] : fifos)
    if (Status s = restore_fifo(b, ends, highest); !s) return s;
  return Status::Ok();
}

}  // namespace ferry::pm
