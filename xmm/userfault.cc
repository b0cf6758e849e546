#include "xmm/userfault.h"

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

namespace ferry::xmm {
namespace {

// EEXIST: present already; ENOENT/ESRCH: the range or the process is gone; EAGAIN: an
// address-space change is queued and unread.
Result<Resolve> classify(const char* what, int err) {
  switch (err) {
    case EEXIST: return Resolve::kAlreadyPresent;
    case ENOENT:
    case ESRCH: return Resolve::kGone;
    case EAGAIN: return Resolve::kRetry;
    default: return make_error(ErrorCode::kUnavailable, errno_message(what, err));
  }
}

}  // namespace

Status Userfault::read_events(std::vector<UserfaultEvent>& out) {
  uffd_msg msgs[64];
  for (;;) {
    ssize_t n = ::read(fd_.get(), msgs, sizeof msgs);
    if (n < 0) {
      if (errno == EAGAIN) return Status::Ok();
      if (errno == EINTR) continue;
      return make_error(ErrorCode::kUnavailable, errno_message("read userfaultfd", errno));
    }
    for (size_t i = 0; i < size_t(n) / sizeof(uffd_msg); ++i) {
      const uffd_msg& m = msgs[i];
      UserfaultEvent e;
      switch (m.event) {
        case UFFD_EVENT_PAGEFAULT:
          e.kind = UserfaultEvent::Kind::kPageFault;
          e.address = m.arg.pagefault.address & ~uint64_t(4095);
          e.write = (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
          e.thread = pid_t(m.arg.pagefault.feat.ptid);
          break;
        case UFFD_EVENT_REMOVE:
          e.kind = UserfaultEvent::Kind::kRemove;
          e.address = m.arg.remove.start;
          e.end = m.arg.remove.end;
          break;
        case UFFD_EVENT_UNMAP:
          e.kind = UserfaultEvent::Kind::kUnmap;
          e.address = m.arg.remove.start;
          e.end = m.arg.remove.end;
          break;
        case UFFD_EVENT_REMAP:
          e.kind = UserfaultEvent::Kind::kRemap;
          e.address = m.arg.remap.from;
          e.to = m.arg.remap.to;
          e.length = m.arg.remap.len;
          break;
        case UFFD_EVENT_FORK:
          e.kind = UserfaultEvent::Kind::kFork;
          e.fork_fd = int(m.arg.fork.ufd);
          break;
        default: break;
      }
      out.push_back(e);
    }
    if (size_t(n) < sizeof msgs) return Status::Ok();
  }
}

Result<Resolve> Userfault::copy(uint64_t address, std::span<const std::byte> bytes, uint64_t* present) {
  constexpr uint64_t kPage = 4096;
  uffdio_copy c{};
  c.dst = address;
  c.src = reinterpret_cast<uint64_t>(bytes.data());
  c.len = bytes.size();
  bool some_present = false;
  while (c.len > 0) {
    if (::ioctl(fd_.get(), UFFDIO_COPY, &c) == 0) break;
    int err = errno;
    // c.copy tells how far it got. A page already present stops the kernel: skip it and go on
    // with the rest; a partial EAGAIN goes on where it stopped.
    uint64_t done = c.copy > 0 ? uint64_t(c.copy) : 0;
    if (err == EEXIST) {
      some_present = true;
      done += kPage;
      if (present) ++*present;
    } else if (!(err == EAGAIN && done > 0)) {
      return classify("UFFDIO_COPY", err);
    }
    if (done >= c.len) break;
    c.dst += done;
    c.src += done;
    c.len -= done;
    c.copy = 0;
  }
  if (!some_present) return Resolve::kDone;
  // A thread may wait on a page that someone else installed: wake the whole range.
  if (Status s = wake(address, bytes.size()); !s) return s.error();
  return Resolve::kAlreadyPresent;
}

Result<Resolve> Userfault::zero(uint64_t address, uint64_t length) {
  constexpr uint64_t kPage = 4096;
  uffdio_zeropage z{};
  z.range.start = address;
  z.range.len = length;
  bool some_present = false;
  while (z.range.len > 0) {
    if (::ioctl(fd_.get(), UFFDIO_ZEROPAGE, &z) == 0) break;
    int err = errno;
    uint64_t done = z.zeropage > 0 ? uint64_t(z.zeropage) : 0;
    if (err == EEXIST) {
      some_present = true;
      done += kPage;
    } else if (!(err == EAGAIN && done > 0)) {
      return classify("UFFDIO_ZEROPAGE", err);
    }
    if (done >= z.range.len) break;
    z.range.start += done;
    z.range.len -= done;
    z.zeropage = 0;
  }
  if (!some_present) return Resolve::kDone;
  if (Status s = wake(address, length); !s) return s.error();
  return Resolve::kAlreadyPresent;
}

Status Userfault::wake(uint64_t address, uint64_t length) {
  uffdio_range r{address, length};
  if (::ioctl(fd_.get(), UFFDIO_WAKE, &r) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message("UFFDIO_WAKE", errno));
  return Status::Ok();
}

Status Userfault::unregister(uint64_t start, uint64_t end) {
  uffdio_range r{start, end - start};
  if (::ioctl(fd_.get(), UFFDIO_UNREGISTER, &r) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message("UFFDIO_UNREGISTER", errno));
  return Status::Ok();
}

bool Userfault::target_alive() {
  // A zero-page request where nothing is registered (the lowest mappable page): ENOENT while
  // the address space exists, ESRCH once it is gone.
  uffdio_zeropage z{};
  z.range.start = 0x10000;
  z.range.len = 4096;
  return !(::ioctl(fd_.get(), UFFDIO_ZEROPAGE, &z) != 0 && errno == ESRCH);
}

}  // namespace ferry::xmm
