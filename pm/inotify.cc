#include "pm/inotify.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <vector>

#include "dipc/unique_fd.h"
#include "pm/restore_builder.h"

namespace ferry::pm {
namespace {

std::string fd_name(int fd) { return "fd " + std::to_string(fd); }

struct Watch {
  int wd = 0;
  uint32_t mask = 0;
  uint64_t inode = 0;
  dev_t dev = 0;  // the inode's device, as stat shows it
  int handle_type = 0;
  std::vector<unsigned char> handle;
};

// "inotify wd:1 ino:a720d7 sdev:fe00000 mask:200 ignored_mask:0 fhandle-bytes:8
// fhandle-type:1 f_handle:d720a700949b85cf" lines of an inotify instance's fdinfo.
std::vector<Watch> parse_watches(const std::string& info) {
  std::vector<Watch> out;
  std::istringstream in(info);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("inotify ", 0) != 0) continue;
    Watch w;
    unsigned long long sdev = 0;
    std::istringstream words(line.substr(8));
    for (std::string word; words >> word;) {
      auto colon = word.find(':');
      if (colon == std::string::npos) continue;
      std::string key = word.substr(0, colon), value = word.substr(colon + 1);
      if (key == "wd")
        w.wd = std::atoi(value.c_str());
      else if (key == "ino")
        w.inode = std::strtoull(value.c_str(), nullptr, 16);
      else if (key == "sdev")
        sdev = std::strtoull(value.c_str(), nullptr, 16);
      else if (key == "mask")
        w.mask = uint32_t(std::strtoul(value.c_str(), nullptr, 16));
      else if (key == "fhandle-type")
        w.handle_type = std::atoi(value.c_str());
      else if (key == "f_handle")
        for (size_t i = 0; i + 1 < value.size(); i += 2)
          w.handle.push_back(
              static_cast<unsigned char>(std::strtoul(value.substr(i, 2).c_str(), nullptr, 16)));
    }
    w.dev = makedev(unsigned(sdev >> 20),
                    unsigned(sdev & 0xfffff));  // the kernel's dev_t: 12 bits major, 20 minor
    out.push_back(std::move(w));
  }
  std::sort(out.begin(), out.end(), [](const Watch& a, const Watch& b) { return a.wd < b.wd; });
  return out;
}

// Whether `path`, in the process's view of the file system, is the watched inode.
bool is_watched(pid_t pid, const std::string& path, const Watch& w) {
  struct stat st {};
  return !path.empty() &&
         ::stat(("/proc/" + std::to_string(pid) + "/root" + path).c_str(), &st) == 0 &&
         st.st_ino == w.inode && st.st_dev == w.dev;
}

// The watched inode's path, by its file handle: opened (O_PATH) through a mount of its file
// system on this node, and named by the link of what was opened. "" if that fails.
std::string path_by_handle(const Watch& w) {
  if (w.handle.empty()) return "";
  std::string mounts = read_text("/proc/self/mountinfo");
  std::istringstream in(mounts);
  std::string want = std::to_string(major(w.dev)) + ":" + std::to_string(minor(w.dev));
  std::vector<unsigned char> raw(sizeof(file_handle) + w.handle.size());
  auto* h = reinterpret_cast<file_handle*>(raw.data());
  h->handle_bytes = unsigned(w.handle.size());
  h->handle_type = w.handle_type;
  std::memcpy(h->f_handle, w.handle.data(), w.handle.size());
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string id, parent, devno, root, point;
    if (!(f >> id >> parent >> devno >> root >> point) || devno != want) continue;
    UniqueFd mount(::open(point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // not O_PATH: EBADF
    if (!mount) continue;
    UniqueFd file(::open_by_handle_at(mount.get(), h, O_PATH | O_CLOEXEC));
    if (!file) continue;
    std::string path = read_link("/proc/self/fd/" + std::to_string(file.get()));
    if (!path.empty() && path.front() == '/') return path;
  }
  return "";
}

// Failing the handle: the process's cwd, its open files and directories, and what those
// directories hold.
std::string path_by_search(pid_t pid, const Watch& w) {
  std::vector<std::string> candidates{read_link("/proc/" + std::to_string(pid) + "/cwd")};
  auto fds = read_fds(pid);
  if (fds)
    for (const auto& f : fds.value())
      if (!f.target.empty() && f.target.front() == '/') candidates.push_back(f.target);
  for (size_t i = 0, n = candidates.size(); i < n; ++i) {
    if (is_watched(pid, candidates[i], w)) return candidates[i];
    std::string dir = candidates[i];
    if (auto slash = dir.rfind('/'); slash != std::string::npos)
      candidates.push_back(slash == 0 ? "/" : dir.substr(0, slash));
  }
  for (const auto& c : candidates) {
    if (is_watched(pid, c, w)) return c;
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/root" + c, ec)) {
      std::string path = (c == "/" ? "" : c) + "/" + e.path().filename().string();
      if (is_watched(pid, path, w)) return path;
    }
  }
  return "";
}

}  // namespace

bool is_inotify(const OpenFd& f) { return f.target == "anon_inode:inotify"; }

Status capture_inotify(pid_t pid, const OpenFd& f, wire::KernelObject::Builder* out) {
  auto watches = parse_watches(f.info);
  std::vector<std::string> paths;
  for (const auto& w : watches) {
    std::string path = path_by_handle(w);
    if (!is_watched(pid, path, w)) path = path_by_search(pid, w);
    if (path.empty())
      return make_error(ErrorCode::kRefused,
                        fd_name(f.fd) + " is an inotify instance whose watch " +
                            std::to_string(w.wd) + " is on an inode (" + std::to_string(w.inode) +
                            ") whose path cannot be found: it cannot move");
    paths.push_back(path);
  }
  if (!out) return Status::Ok();
  auto l = out->initInotifyWatches(uint32_t(watches.size()));
  for (uint32_t i = 0; i < watches.size(); ++i) {
    l[i].setWd(watches[i].wd);
    l[i].setMask(watches[i].mask);
    l[i].setPath(paths[i]);
  }
  return Status::Ok();
}

Status restore_inotify(Builder& b, wire::OpenFile::Reader f) {
  const std::string what = fd_name(f.getFd()) + " (inotify)";
  auto made = b.call("inotify for " + what, SYS_inotify_init1, IN_NONBLOCK | IN_CLOEXEC);
  if (!made) return made.error();
  const uint64_t fd = uint64_t(made.value());
  constexpr int kMostSkipped = 1 << 20;  // about 10 s of injected calls
  for (auto w : f.getObject().getInotifyWatches()) {
    std::string path = w.getPath();
    auto p = b.put_string(path);
    if (!p) return p.error();
    for (int skipped = 0;; ++skipped) {
      auto got =
          b.call(what + " watches " + path, SYS_inotify_add_watch, fd, p.value(), w.getMask());
      if (!got) return got.error();
      if (got.value() == w.getWd()) break;
      if (got.value() > w.getWd() || skipped > kMostSkipped)
        return make_error(ErrorCode::kUnavailable,
                          "restore: " + what + ": the watch on " + path + " came back as " +
                              std::to_string(got.value()) + ", not " + std::to_string(w.getWd()));
      if (auto r = b.call(what + " gives back watch " + std::to_string(got.value()),
                          SYS_inotify_rm_watch, fd, uint64_t(got.value()));
          !r)
        return r.error();
    }
  }
  // The IN_IGNORED of each watch given back, and anything the files did meanwhile: the program
  // did not see those happen.
  for (;;) {
    auto r = b.tracee().syscall(SYS_read, fd, b.data_address(), (kScratchPages - 1) * kPage);
    if (!r) return r.error();
    if (r.value() <= 0) break;
  }
  if (!(f.getFlags() & O_NONBLOCK))
    if (auto r = b.call("flags of " + what, SYS_fcntl, fd, F_SETFL, 0); !r) return r.error();
  return b.move_fd(made.value(), f.getFd(), f.getFlags() & O_CLOEXEC, what);
}

}  // namespace ferry::pm
