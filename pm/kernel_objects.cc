#include "pm/kernel_objects.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <sstream>

#include "pm/inotify.h"
#include "pm/restore_builder.h"

// Not in every libc's headers: timerfd's expirations counter (CONFIG_CHECKPOINT_RESTORE).
#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

namespace ferry::pm {
namespace {

std::string fd_name(int fd) { return "fd " + std::to_string(fd); }

// The value after "key:" on its line of fdinfo, or "" (keys are matched at a line's start).
std::string field(std::string_view info, std::string_view key) {
  size_t at = 0;
  while (at < info.size()) {
    size_t end = info.find('\n', at);
    if (end == std::string_view::npos) end = info.size();
    std::string_view line = info.substr(at, end - at);
    if (line.substr(0, key.size()) == key && line.size() > key.size() && line[key.size()] == ':') {
      std::string_view v = line.substr(key.size() + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      return std::string(v);
    }
    at = end + 1;
  }
  return "";
}

// "(sec, nsec)" -> nanoseconds.
uint64_t timespec_ns(const std::string& text) {
  unsigned long long sec = 0, nsec = 0;
  std::sscanf(text.c_str(), "(%llu, %llu)", &sec, &nsec);
  return sec * 1000000000ull + nsec;
}

struct Watch {
  int fd;
  uint32_t events;
  uint64_t data;
  uint64_t inode;
};

// "tfd:        5 events:       19 data: 5  pos:0 ino:81 sdev:d" lines of an epoll's fdinfo.
std::vector<Watch> watches(std::string_view info) {
  std::vector<Watch> out;
  std::istringstream in{std::string(info)};
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("tfd:", 0) != 0) continue;
    int fd = -1;
    unsigned events = 0;
    unsigned long long data = 0, inode = 0;
    if (std::sscanf(line.c_str(), "tfd: %d events: %x data: %llx", &fd, &events, &data) != 3) continue;
    if (auto i = line.find("ino:"); i != std::string::npos) inode = std::strtoull(line.c_str() + i + 4, nullptr, 16);
    out.push_back({fd, events, data, inode});
  }
  return out;
}

std::string kind_of(const OpenFd& f) { return f.target.rfind("anon_inode:", 0) == 0 ? f.target.substr(11) : ""; }

}  // namespace

bool is_kernel_object(const OpenFd& f) {
  std::string k = kind_of(f);
  return k == "[eventfd]" || k == "[eventpoll]" || k == "[timerfd]" || k == "[signalfd]" || is_inotify(f);
}

Status check_kernel_object(pid_t pid, const OpenFd& f, const std::vector<OpenFd>& fds) {
  if (is_inotify(f)) return capture_inotify(pid, f, nullptr);
  if (kind_of(f) != "[eventpoll]") return Status::Ok();
  for (const auto& w : watches(f.info)) {
    const OpenFd* target = nullptr;
    for (const auto& g : fds)
      if (g.fd == w.fd) target = &g;
    if (!target || (w.inode != 0 && target->inode != w.inode))
      return make_error(ErrorCode::kRefused, fd_name(f.fd) + " is an epoll instance watching a file that is no longer open as fd " +
                                                 std::to_string(w.fd) + ": it cannot move");
    if (kind_of(*target) == "[eventpoll]")
      return make_error(ErrorCode::kRefused, fd_name(f.fd) + " is an epoll instance watching another (fd " +
                                                 std::to_string(w.fd) + "): nested epoll cannot move yet");
  }
  return Status::Ok();
}

Status capture_kernel_object(pid_t pid, const OpenFd& f, wire::OpenFile::Builder out) {
  std::string k = kind_of(f);
  auto o = out.initObject();
  if (is_inotify(f)) {
    out.setKind(wire::OpenFile::Kind::INOTIFY);
    return capture_inotify(pid, f, &o);
  } else if (k == "[eventfd]") {
    out.setKind(wire::OpenFile::Kind::EVENTFD);
    o.setCount(std::strtoull(field(f.info, "eventfd-count").c_str(), nullptr, 16));
    o.setSemaphore(field(f.info, "eventfd-semaphore") == "1");
  } else if (k == "[timerfd]") {
    out.setKind(wire::OpenFile::Kind::TIMERFD);
    o.setClock(std::atoi(field(f.info, "clockid").c_str()));
    o.setTicks(std::strtoull(field(f.info, "ticks").c_str(), nullptr, 10));
    o.setRemainingNs(timespec_ns(field(f.info, "it_value")));
    o.setIntervalNs(timespec_ns(field(f.info, "it_interval")));
  } else if (k == "[signalfd]") {
    out.setKind(wire::OpenFile::Kind::SIGNALFD);
    o.setMask(std::strtoull(field(f.info, "sigmask").c_str(), nullptr, 16));
  } else if (k == "[eventpoll]") {
    out.setKind(wire::OpenFile::Kind::EPOLL);
    auto ws = watches(f.info);
    auto l = o.initWatched(uint32_t(ws.size()));
    for (uint32_t i = 0; i < ws.size(); ++i) {
      l[i].setFd(ws[i].fd);
      l[i].setEvents(ws[i].events);
      l[i].setData(ws[i].data);
    }
  } else {
    return make_error(ErrorCode::kRefused, fd_name(f.fd) + " is " + f.target + ": it cannot move");
  }
  return Status::Ok();
}

namespace {

// The new object's descriptor `made` goes to its number.
Status place(Builder& b, long made, wire::OpenFile::Reader f) {
  return b.move_fd(made, f.getFd(), f.getFlags() & O_CLOEXEC, fd_name(f.getFd()));
}

Status restore_object(Builder& b, wire::OpenFile::Reader f) {
  auto o = f.getObject();
  const std::string what = fd_name(f.getFd());
  const uint64_t nonblock = (f.getFlags() & O_NONBLOCK) ? 1 : 0, cloexec = (f.getFlags() & O_CLOEXEC) ? 1 : 0;
  switch (f.getKind()) {
    case wire::OpenFile::Kind::EVENTFD: {
      uint64_t flags = (nonblock ? EFD_NONBLOCK : 0) | (cloexec ? EFD_CLOEXEC : 0) | (o.getSemaphore() ? EFD_SEMAPHORE : 0);
      auto made = b.call("eventfd for " + what, SYS_eventfd2, 0, flags);
      if (!made) return made.error();
      if (uint64_t count = o.getCount(); count > 0) {
        auto p = b.put(&count, sizeof count);
        if (!p) return p.error();
        if (auto r = b.call("set the counter of " + what, SYS_write, uint64_t(made.value()), p.value(), sizeof count); !r)
          return r.error();
      }
      return place(b, made.value(), f);
    }
    case wire::OpenFile::Kind::TIMERFD: {
      uint64_t flags = (nonblock ? TFD_NONBLOCK : 0) | (cloexec ? TFD_CLOEXEC : 0);
      auto made = b.call("timerfd for " + what, SYS_timerfd_create, uint64_t(o.getClock()), flags);
      if (!made) return made.error();
      // A periodic timer that has expired and not been read yet shows no time left (the kernel
      // sets the next expiration when it is read): its next one is a period away.
      uint64_t next_ns = o.getRemainingNs() > 0 ? o.getRemainingNs() : o.getIntervalNs();
      if (next_ns > 0) {
        itimerspec spec{};
        spec.it_value = {time_t(next_ns / 1000000000ull), long(next_ns % 1000000000ull)};
        spec.it_interval = {time_t(o.getIntervalNs() / 1000000000ull), long(o.getIntervalNs() % 1000000000ull)};
        auto p = b.put(&spec, sizeof spec);
        if (!p) return p.error();
        if (auto r = b.call("arm " + what, SYS_timerfd_settime, uint64_t(made.value()), 0, p.value(), 0); !r) return r.error();
      }
      if (uint64_t ticks = o.getTicks(); ticks > 0) {
        auto p = b.put(&ticks, sizeof ticks);
        if (!p) return p.error();
        if (auto r = b.call("expirations of " + what, SYS_ioctl, uint64_t(made.value()), TFD_IOC_SET_TICKS, p.value()); !r)
          return r.error();
      }
      return place(b, made.value(), f);
    }
    case wire::OpenFile::Kind::SIGNALFD: {
      uint64_t mask = o.getMask();
      auto p = b.put(&mask, sizeof mask);
      if (!p) return p.error();
      uint64_t flags = (nonblock ? SFD_NONBLOCK : 0) | (cloexec ? SFD_CLOEXEC : 0);
      auto made = b.call("signalfd for " + what, SYS_signalfd4, uint64_t(-1), p.value(), sizeof mask, flags);
      if (!made) return made.error();
      return place(b, made.value(), f);
    }
    case wire::OpenFile::Kind::EPOLL: {
      auto made = b.call("epoll for " + what, SYS_epoll_create1, cloexec ? EPOLL_CLOEXEC : 0);
      if (!made) return made.error();
      if (Status s = place(b, made.value(), f); !s) return s;
      for (auto w : o.getWatched()) {
        epoll_event ev{};
        ev.events = w.getEvents();
        ev.data.u64 = w.getData();
        auto p = b.put(&ev, sizeof ev);
        if (!p) return p.error();
        if (auto r = b.call(what + " watches fd " + std::to_string(w.getFd()), SYS_epoll_ctl, uint64_t(f.getFd()),
                            EPOLL_CTL_ADD, uint64_t(w.getFd()), p.value());
            !r)
          return r.error();
      }
      return Status::Ok();
    }
    case wire::OpenFile::Kind::INOTIFY:
      return restore_inotify(b, f);
    default:
      return Status::Ok();
  }
}

}  // namespace

Status restore_kernel_objects(Builder& b, wire::ProcessImage::Reader image) {
  for (bool epolls : {false, true})
    for (auto f : image.getFiles()) {
      auto k = f.getKind();
      bool object = k == wire::OpenFile::Kind::EVENTFD || k == wire::OpenFile::Kind::TIMERFD ||
                    k == wire::OpenFile::Kind::SIGNALFD || k == wire::OpenFile::Kind::EPOLL ||
                    k == wire::OpenFile::Kind::INOTIFY;
      if (!object || (k == wire::OpenFile::Kind::EPOLL) != epolls) continue;
      if (Status s = restore_object(b, f); !s) return s;
    }
  return Status::Ok();
}

}  // namespace ferry::pm
