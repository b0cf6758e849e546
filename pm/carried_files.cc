#include "pm/carried_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "dipc/unique_fd.h"
#include "pm/restore_builder.h"

namespace ferry::pm {
namespace {

namespace fs = std::filesystem;

const std::string kDeleted = " (deleted)";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
bool starts_with(const std::string& s, const std::string& head) { return s.rfind(head, 0) == 0; }
std::string without_deleted(const std::string& s) { return ends_with(s, kDeleted) ? s.substr(0, s.size() - kDeleted.size()) : s; }
bool is_memfd(const std::string& path) { return starts_with(path, "/memfd:"); }

std::string proc(pid_t pid, const std::string& what) { return "/proc/" + std::to_string(pid) + "/" + what; }

std::string map_file(pid_t pid, uint64_t start, uint64_t end) {
  std::ostringstream s;
  s << std::hex << start << "-" << end;
  return proc(pid, "map_files/" + s.str());
}

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }

struct Key {
  dev_t dev;
  ino_t ino;
  bool operator<(const Key& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
};

Status write_all(int fd, std::span<const std::byte> bytes, const std::string& what) {
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(ErrorCode::kUnavailable, errno_message("restore: write " + what, errno));
    done += size_t(n);
  }
  return Status::Ok();
}

// Does the file at `path` hold exactly `content`?
bool same_content(const std::string& path, std::span<const std::byte> content) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || uint64_t(st.st_size) != content.size()) return false;
  std::vector<std::byte> buf(1 << 20);
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::pread(fd.get(), buf.data(), std::min(buf.size(), content.size() - done), off_t(done));
    if (n <= 0) return false;
    if (std::memcmp(buf.data(), content.data() + done, size_t(n)) != 0) return false;
    done += size_t(n);
  }
  return true;
}

// Creates `path` (and its missing directories, owned like the file) with the content, mode and
// owner, atomically (a temporary name, then rename).
Status create_at_path(const std::string& path, std::span<const std::byte> content, wire::CarriedFile::Reader f) {
  fs::path p(path);
  std::vector<fs::path> made;
  for (fs::path d = p.parent_path(); !d.empty() && !fs::exists(d); d = d.parent_path()) made.insert(made.begin(), d);
  for (const auto& d : made) {
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST)
      return make_error(ErrorCode::kUnavailable, errno_message("restore: create directory " + d.string(), errno));
    (void)::chown(d.c_str(), f.getUid(), f.getGid());
  }
  std::string tmp = path + ".ferry-" + std::to_string(::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return make_error(ErrorCode::kUnavailable, errno_message("restore: create " + tmp, errno));
  Status s = write_all(fd.get(), content, tmp);
  if (s) {
    (void)::fchown(fd.get(), f.getUid(), f.getGid());
    (void)::fchmod(fd.get(), f.getMode() & 07777);
    if (::rename(tmp.c_str(), path.c_str()) != 0) s = make_error(ErrorCode::kUnavailable, errno_message("restore: rename " + tmp, errno));
  }
  if (!s) ::unlink(tmp.c_str());
  return s;
}

}  // namespace

bool is_carried(const OpenFd& f) {
  return S_ISREG(f.mode) && (is_memfd(f.target) || ends_with(f.target, kDeleted));
}

bool is_shared_memory(const Vma& v, const std::vector<OpenFd>& fds) {
  if (!v.shared || !v.is_file()) return false;
  return v.path == "/dev/zero" + kDeleted || (is_memfd(v.path) && !is_carried(v, fds));
}

bool is_carried(const Vma& v, const std::vector<OpenFd>& fds) {
  if (!v.is_file() || v.path.empty() || v.path.front() != '/') return false;
  if (is_memfd(v.path)) {
    for (const auto& f : fds)
      if (is_memfd(f.target) && f.inode == v.inode) return true;
    return false;  // only mapped: served lazily, or refused
  }
  if (starts_with(v.path, "/dev/") && !starts_with(v.path, "/dev/shm/")) return false;  // devices, /dev/zero
  if (starts_with(v.path, "/SYSV")) return false;
  return ends_with(v.path, kDeleted) || (v.shared && v.write);
}

Status describe_carried(pid_t pid, const std::vector<Vma>& maps, const std::vector<OpenFd>& fds,
                        wire::ProcessImage::Builder image) {
  struct Object {
    std::string path;
    struct stat st {};
    wire::CarriedFile::Kind kind = wire::CarriedFile::Kind::SHARED;
    uint32_t seals = 0;
  };
  std::map<Key, uint32_t> index;
  std::vector<Object> objects;
  auto add = [&](const std::string& handle, const std::string& path) -> Status {
    Object o;
    if (::stat(handle.c_str(), &o.st) != 0)
      return make_error(ErrorCode::kUnavailable, errno_message("stat " + handle + " (" + path + ")", errno));
    Key k{o.st.st_dev, o.st.st_ino};
    if (index.count(k)) return Status::Ok();
    o.path = without_deleted(path);
    bool held = false;  // a memfd the process has a descriptor of
    for (const auto& f : fds) held = held || (is_memfd(f.target) && f.inode == o.st.st_ino);
    o.kind = is_memfd(path) && !held     ? wire::CarriedFile::Kind::MEMFD_LAZY
             : is_memfd(path)            ? wire::CarriedFile::Kind::MEMFD
             : ends_with(path, kDeleted) ? wire::CarriedFile::Kind::DELETED
                                         : wire::CarriedFile::Kind::SHARED;
    if (o.kind == wire::CarriedFile::Kind::MEMFD || o.kind == wire::CarriedFile::Kind::MEMFD_LAZY) {
      UniqueFd fd(::open(handle.c_str(), O_RDONLY | O_CLOEXEC));
      int seals = fd ? ::fcntl(fd.get(), F_GET_SEALS) : -1;
      o.seals = seals > 0 ? uint32_t(seals) : 0;
    }
    index[k] = uint32_t(objects.size());
    objects.push_back(std::move(o));
    return Status::Ok();
  };
  for (const auto& v : maps)
    if (is_carried(v, fds) || (is_memfd(v.path) && is_shared_memory(v, fds)))
      if (Status s = add(map_file(pid, v.start, v.end), v.path); !s) return s;
  for (const auto& f : fds)
    if (is_carried(f))
      if (Status s = add(proc(pid, "fd/" + std::to_string(f.fd)), f.target); !s) return s;
  if (objects.empty()) return Status::Ok();

  uint64_t total = 0;
  const Object* largest = &objects.front();
  for (const auto& o : objects) {
    if (o.kind == wire::CarriedFile::Kind::MEMFD_LAZY) continue;  // its pages move as memory
    total += uint64_t(o.st.st_size);
    if (o.st.st_size > largest->st.st_size) largest = &o;
  }
  if (total > kCarryLimitBytes)
    return make_error(ErrorCode::kRefused, "its files that must travel with it (written shared mappings, deleted files, "
                                           "memfds) hold " + mib(total) + ", over the " + mib(kCarryLimitBytes) +
                                           " Ferry carries; the largest is " + largest->path + " (" +
                                           mib(uint64_t(largest->st.st_size)) + ")");

  auto list = image.initCarried(uint32_t(objects.size()));
  for (uint32_t i = 0; i < objects.size(); ++i) {
    const Object& o = objects[i];
    list[i].setPath(o.path);
    list[i].setSize(uint64_t(o.st.st_size));
    list[i].setMode(o.st.st_mode);
    list[i].setUid(o.st.st_uid);
    list[i].setGid(o.st.st_gid);
    list[i].setKind(o.kind);
    list[i].setSeals(o.seals);
  }
  // Every mapping and regular descriptor of a carried file uses the carried copy.
  auto vmas = image.getVmas();
  for (uint32_t i = 0; i < maps.size() && i < vmas.size(); ++i) {
    if (!maps[i].is_file()) continue;
    struct stat st {};
    if (::stat(map_file(pid, maps[i].start, maps[i].end).c_str(), &st) != 0) continue;
    if (auto it = index.find({st.st_dev, st.st_ino}); it != index.end()) vmas[i].setCarried(it->second + 1);
  }
  auto files = image.getFiles();
  for (uint32_t i = 0; i < fds.size() && i < files.size(); ++i) {
    if (!S_ISREG(fds[i].mode)) continue;
    struct stat st {};
    if (::stat(proc(pid, "fd/" + std::to_string(fds[i].fd)).c_str(), &st) != 0) continue;
    if (auto it = index.find({st.st_dev, st.st_ino}); it != index.end()) files[i].setCarried(it->second + 1);
  }
  return Status::Ok();
}

Status read_carried(pid_t pid, wire::ProcessImage::Reader image, const CarriedSink& sink, size_t chunk) {
  auto carried = image.getCarried();
  for (uint32_t i = 0; i < carried.size(); ++i) {
    if (carried[i].getKind() == wire::CarriedFile::Kind::MEMFD_LAZY) continue;
    std::string handle;
    for (auto v : image.getVmas())
      if (v.getCarried() == i + 1) {
        handle = map_file(pid, v.getStart(), v.getEnd());
        break;
      }
    if (handle.empty())
      for (auto f : image.getFiles())
        if (f.getCarried() == i + 1) {
          handle = proc(pid, "fd/" + std::to_string(f.getFd()));
          break;
        }
    std::string what = std::string(carried[i].getPath()) + " (" + handle + ")";
    UniqueFd fd(::open(handle.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return make_error(ErrorCode::kUnavailable, errno_message("open " + what, errno));
    std::vector<std::byte> buf(std::min<uint64_t>(chunk, std::max<uint64_t>(carried[i].getSize(), 1)));
    for (uint64_t done = 0; done < carried[i].getSize();) {
      size_t want = size_t(std::min<uint64_t>(buf.size(), carried[i].getSize() - done));
      ssize_t n = ::pread(fd.get(), buf.data(), want, off_t(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return make_error(ErrorCode::kUnavailable, errno_message("read " + what, errno));
      if (n == 0) std::memset(buf.data(), 0, want), n = ssize_t(want);  // shrunk since: the rest reads as zeros
      if (Status s = sink(i, done, std::span(buf.data(), size_t(n))); !s) return s;
      done += uint64_t(n);
    }
  }
  return Status::Ok();
}

Result<CarriedContents> read_carried_contents(pid_t pid, wire::ProcessImage::Reader image) {
  CarriedContents out(image.getCarried().size());
  for (uint32_t i = 0; i < out.size(); ++i)
    if (image.getCarried()[i].getKind() != wire::CarriedFile::Kind::MEMFD_LAZY) out[i].reserve(image.getCarried()[i].getSize());
  Status s = read_carried(pid, image, [&](uint32_t i, uint64_t, std::span<const std::byte> bytes) {
    out[i].insert(out[i].end(), bytes.begin(), bytes.end());
    return Status::Ok();
  });
  if (!s) return s.error();
  return out;
}

Result<std::vector<int>> open_carried(Builder& b, wire::ProcessImage::Reader image, const CarriedContents& contents,
                                      int lowest, std::vector<std::string>& notes) {
  auto carried = image.getCarried();
  if (contents.size() != carried.size())
    return make_error(ErrorCode::kInvalid, "restore: the image carries " + std::to_string(carried.size()) +
                                               " files, but the contents of " + std::to_string(contents.size()) + " came");
  std::vector<int> opened;
  auto fail = [&](const Error& e) -> Result<std::vector<int>> {
    for (int fd : opened) (void)b.call("close", SYS_close, uint64_t(fd));
    return e;
  };
  pid_t pid = b.tracee().pid();
  for (uint32_t i = 0; i < carried.size(); ++i) {
    auto f = carried[i];
    std::string path = f.getPath();
    std::span<const std::byte> content(contents[i]);
    bool lazy = f.getKind() == wire::CarriedFile::Kind::MEMFD_LAZY;
    if (content.size() != (lazy ? 0 : f.getSize()))
      return fail(make_error(ErrorCode::kInvalid, "restore: " + path + " came with " + std::to_string(content.size()) +
                                                      " bytes, the image says " + std::to_string(f.getSize())));
    // The descriptor in the process, and whether its content still has to be written.
    Result<long> fd = make_error(ErrorCode::kInternal, "");
    bool fill = true;
    auto open_unlinked = [&](const std::string& dir) -> Result<long> {
      auto p = b.put_string(dir);
      if (!p) return p.error();
      return b.call("make an unlinked copy of " + path + " in " + dir, SYS_openat, uint64_t(AT_FDCWD), p.value(),
                    uint64_t(O_TMPFILE | O_RDWR | O_CLOEXEC), uint64_t(f.getMode() & 07777));
    };
    if (f.getKind() == wire::CarriedFile::Kind::MEMFD || lazy) {
      std::string name = path.substr(std::strlen("/memfd:"));
      auto p = b.put_string(name);
      if (!p) return fail(p.error());
      fd = b.call("memfd_create " + name, SYS_memfd_create, p.value(), uint64_t(MFD_CLOEXEC | MFD_ALLOW_SEALING));
    } else {
      bool at_path = f.getKind() == wire::CarriedFile::Kind::SHARED;
      if (at_path && !fs::exists(path)) {
        if (Status s = create_at_path(path, content, f); !s) return fail(s.error());
        fill = false;
      } else if (at_path && same_content(path, content)) {
        fill = false;
      } else if (at_path) {
        at_path = false;
        notes.push_back(path + " holds other content on this node: the job has an unlinked copy of its own");
      }
      if (at_path) {
        auto p = b.put_string(path);
        if (!p) return fail(p.error());
        fd = b.call("open " + path, SYS_openat, uint64_t(AT_FDCWD), p.value(), uint64_t(O_RDWR | O_CLOEXEC));
      } else {
        std::string dir = fs::path(path).parent_path().string();
        fd = fs::is_directory(dir) ? open_unlinked(dir) : fd;
        if (!fd) fd = open_unlinked("/tmp");  // its directory is gone, or its file system has no O_TMPFILE
      }
    }
    if (!fd) return fail(fd.error());
    auto parked = b.call("park " + path, SYS_fcntl, uint64_t(fd.value()), F_DUPFD_CLOEXEC, uint64_t(lowest));
    (void)b.call("close", SYS_close, uint64_t(fd.value()));
    if (!parked) return fail(parked.error());
    opened.push_back(int(parked.value()));
    if (lazy) {  // its size only: the pages come as memory
      if (auto r = b.call("size " + path, SYS_ftruncate, uint64_t(parked.value()), f.getSize()); !r) return fail(r.error());
      continue;
    }
    if (!fill) continue;
    // The content goes in from here, through the process's descriptor.
    std::string handle = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(parked.value());
    UniqueFd ours(::open(handle.c_str(), O_WRONLY | O_CLOEXEC));
    if (!ours) return fail(make_error(ErrorCode::kUnavailable, errno_message("restore: open " + handle + " (" + path + ")", errno)));
    if (::ftruncate(ours.get(), off_t(f.getSize())) != 0)
      return fail(make_error(ErrorCode::kUnavailable, errno_message("restore: size " + path, errno)));
    if (Status s = write_all(ours.get(), content, path); !s) return fail(s.error());
    (void)::fchown(ours.get(), f.getUid(), f.getGid());
    (void)::fchmod(ours.get(), f.getMode() & 07777);
  }
  return opened;
}

Status close_carried(Builder& b, wire::ProcessImage::Reader image, const std::vector<int>& opened) {
  Status result = Status::Ok();
  auto carried = image.getCarried();
  for (uint32_t i = 0; i < opened.size() && i < carried.size(); ++i) {
    auto kind = carried[i].getKind();
    if ((kind == wire::CarriedFile::Kind::MEMFD || kind == wire::CarriedFile::Kind::MEMFD_LAZY) && carried[i].getSeals() != 0) {
      auto r = b.call("seal " + std::string(carried[i].getPath()), SYS_fcntl, uint64_t(opened[i]), F_ADD_SEALS,
                      carried[i].getSeals());
      if (!r && result) result = r.error();
    }
    (void)b.call("close", SYS_close, uint64_t(opened[i]));
  }
  return result;
}

}  // namespace ferry::pm
