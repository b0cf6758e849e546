#include "pm/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace ferry::pm {

namespace fs = std::filesystem;

namespace {

Status write_all(int fd, std::span<const std::byte> bytes, const fs::path& file) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(ErrorCode::kUnavailable, errno_message("write " + file.string(), errno));
    done += size_t(n);
  }
  return Status::Ok();
}

}  // namespace

Result<CheckpointSummary> write_checkpoint(const fs::path& dir, wire::ProcessImage::Reader image,
                                           FrozenProcess& process) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot create " + dir.string() + ": " + ec.message());
  fs::path image_tmp = dir / "image.bin.tmp", pages_tmp = dir / "pages.bin.tmp";
  CheckpointSummary sum;
  sum.vmas = image.getVmas().size();
  sum.files = image.getFiles().size();
  {
    int fd = ::open(pages_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return make_error(ErrorCode::kUnavailable, errno_message("create " + pages_tmp.string(), errno));
    Status s = process.read_pages(image, [&](uint64_t, std::span<const std::byte> bytes) {
      sum.bytes += bytes.size();
      return write_all(fd, bytes, pages_tmp);
    });
    if (s && ::fsync(fd) != 0) s = make_error(ErrorCode::kUnavailable, errno_message("fsync " + pages_tmp.string(), errno));
    ::close(fd);
    if (!s) return s.error();
    sum.pages = sum.bytes / image.getPageSize();
  }
  fs::path carried_tmp = dir / "carried.bin.tmp";
  if (image.getCarried().size() > 0) {  // (an empty file when only memfds' sizes are carried)
    int fd = ::open(carried_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return make_error(ErrorCode::kUnavailable, errno_message("create " + carried_tmp.string(), errno));
    Status s = read_carried(process.tracee().pid(), image, [&](uint32_t, uint64_t, std::span<const std::byte> bytes) {
      return write_all(fd, bytes, carried_tmp);
    });
    if (s && ::fsync(fd) != 0) s = make_error(ErrorCode::kUnavailable, errno_message("fsync " + carried_tmp.string(), errno));
    ::close(fd);
    if (!s) return s.error();
  }
  {
    int fd = ::open(image_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return make_error(ErrorCode::kUnavailable, errno_message("create " + image_tmp.string(), errno));
    capnp::MallocMessageBuilder copy;
    copy.setRoot(image);
    try {
      capnp::writeMessageToFd(fd, copy);
    } catch (const kj::Exception& e) {
      ::close(fd);
      return make_error(ErrorCode::kUnavailable, "write " + image_tmp.string() + ": " + e.getDescription().cStr());
    }
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(pages_tmp, dir / "pages.bin", ec);
  if (!ec && image.getCarried().size() > 0) fs::rename(carried_tmp, dir / "carried.bin", ec);
  if (!ec && image.getCarried().size() == 0) fs::remove(dir / "carried.bin", ec);  // of a checkpoint replaced
  if (!ec) fs::rename(image_tmp, dir / "image.bin", ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot complete the checkpoint in " + dir.string() + ": " + ec.message());
  return sum;
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::open(const fs::path& dir) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->dir_ = dir;
  fs::path image = dir / "image.bin";
  c->image_fd_ = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
  if (c->image_fd_ < 0) return make_error(ErrorCode::kNotFound, errno_message("no checkpoint in " + dir.string() + " (" + image.string() + ")", errno));
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = 1ull << 30;
    c->reader_ = std::make_unique<capnp::StreamFdMessageReader>(c->image_fd_, options);
    c->image_ = c->reader_->getRoot<wire::ProcessImage>();
    c->image_.totalSize();
  } catch (const kj::Exception& e) {
    return make_error(ErrorCode::kInvalid, image.string() + " is damaged: " + e.getDescription().cStr());
  }
  return c;
}

Checkpoint::~Checkpoint() {
  reader_.reset();
  if (image_fd_ >= 0) ::close(image_fd_);
}

Result<CarriedContents> Checkpoint::carried() const {
  auto list = image_.getCarried();
  CarriedContents out(list.size());
  if (list.size() == 0) return out;
  fs::path file = dir_ / "carried.bin";
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(ErrorCode::kNotFound, errno_message("open " + file.string(), errno));
  Status result = Status::Ok();
  for (uint32_t i = 0; i < list.size() && result.ok(); ++i) {
    if (list[i].getKind() == wire::CarriedFile::Kind::MEMFD_LAZY) continue;  // its pages are in pages.bin
    out[i].resize(list[i].getSize());
    for (size_t done = 0; done < out[i].size();) {
      ssize_t n = ::read(fd, out[i].data() + done, out[i].size() - done);
      if (n <= 0) {
        result = make_error(ErrorCode::kInvalid, file.string() + " is shorter than its image says");
        break;
      }
      done += size_t(n);
    }
  }
  char extra;
  if (result.ok() && ::read(fd, &extra, 1) == 1) result = make_error(ErrorCode::kInvalid, file.string() + " is longer than its image says");
  ::close(fd);
  if (!result) return result.error();
  return out;
}

PageFeed Checkpoint::pages() const {
  return [this](const PageSink& sink) -> Status {
    fs::path file = dir_ / "pages.bin";
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return make_error(ErrorCode::kNotFound, errno_message("open " + file.string(), errno));
    const size_t page = image_.getPageSize();
    const size_t chunk_pages = 256;
    std::vector<std::byte> buf(chunk_pages * page);
    Status result = Status::Ok();
    for (auto v : image_.getVmas()) {
      auto bits = v.getPresent();
      size_t pages = (v.getEnd() - v.getStart()) / page;
      for (size_t p = 0; p < pages && result.ok() && bits.size() > 0;) {
        if (!((bits[p / 8] >> (p % 8)) & 1)) {
          ++p;
          continue;
        }
        size_t run = p;
        while (run < pages && run - p < chunk_pages && ((bits[run / 8] >> (run % 8)) & 1)) ++run;
        size_t len = (run - p) * page;
        ssize_t n = ::read(fd, buf.data(), len);
        if (n != ssize_t(len)) {
          result = make_error(ErrorCode::kInvalid, file.string() + " is shorter than its image says");
          break;
        }
        result = sink(v.getStart() + p * page, std::span<const std::byte>(buf.data(), len));
        p = run;
      }
      if (!result.ok()) break;
    }
    char extra;
    if (result.ok() && ::read(fd, &extra, 1) == 1)
      result = make_error(ErrorCode::kInvalid, file.string() + " is longer than its image says");
    ::close(fd);
    return result;
  };
}

}  // namespace ferry::pm
