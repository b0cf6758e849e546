// Carried files: files whose whole content moves with the job, because the destination cannot
// be assumed to have them as the job saw them:
//   - a regular file mapped MAP_SHARED and writable (the JVM's hsperfdata file in /tmp, POSIX
//     shared memory in /dev/shm): node-local on a real cluster, and the job's writes are in it;
//   - a file deleted since the job opened or mapped it (a library replaced by a package
//     upgrade, a scratch file unlinked after open): no path leads to it any more;
//   - a memfd the job holds a descriptor of: it may read() it, so its pages cannot arrive lazily.
// A memfd that is only mapped is described too (kind memfdLazy: made anew at its size, with no
// content), and its mappings are shared memory that a lazy restore serves (pm/restore.h).
// One object however many mappings and descriptors name it (told apart by device and inode).
// Its content travels eagerly, before the job resumes: at most kCarryLimitBytes per process in
// all; beyond, the capture is refused naming the largest.
//
// On the destination (open_carried): a path that exists with the same content is used as it
// is (the same cluster file system, or the same machine); a missing one is created with the
// content, mode and owner (its directories too); a path holding other content (someone else's
// file, such as another JVM's hsperfdata file of the same pid) is left alone and the job gets an
// unlinked copy in the same directory. A deleted file becomes an unlinked copy (O_TMPFILE) in
// its directory (or /tmp if that is gone); a memfd a new memfd of the same name and seals.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "dipc/status.h"
#include "pm/image.capnp.h"
#include "pm/proc_info.h"

namespace ferry::pm {

class Builder;

inline constexpr uint64_t kCarryLimitBytes = 128ull << 20;

// Whether this mapping or descriptor of `pid` is carried (check_movable lets these through).
// A memfd mapping is carried when `fds` holds a descriptor of the same memfd.
bool is_carried(const Vma& v, const std::vector<OpenFd>& fds);
bool is_carried(const OpenFd& f);
// MAP_SHARED anonymous memory, or a memfd mapped and not carried: shmem that moves as memory.
bool is_shared_memory(const Vma& v, const std::vector<OpenFd>& fds);

// Describes the carried files in `image` (ProcessImage.carried) and marks the mappings and
// descriptors that use them (Vma.carried, OpenFile.carried): `vmas` and `files` are the image's
// lists, built from `maps` and `fds` in the same order. kRefused over kCarryLimitBytes.
Status describe_carried(pid_t pid, const std::vector<Vma>& maps, const std::vector<OpenFd>& fds,
                        wire::ProcessImage::Builder image);

// The contents by index, as the restoring side holds them. Each must be as long as the
// image says.
using CarriedContents = std::vector<std::vector<std::byte>>;

// Reads each carried file's content from the frozen process `pid`, in chunks of at most
// `chunk` bytes, in index and offset order.
using CarriedSink = std::function<Status(uint32_t index, uint64_t offset, std::span<const std::byte> bytes)>;
Status read_carried(pid_t pid, wire::ProcessImage::Reader image, const CarriedSink& sink, size_t chunk = 1 << 20);

// All of them at once (read_carried into memory).
Result<CarriedContents> read_carried_contents(pid_t pid, wire::ProcessImage::Reader image);

// Restore: opens each carried file in the process `b` builds, on a descriptor of its own at or
// above `lowest` (by index; the caller's mappings and descriptors use them), with its content.
// `notes` gets one line per file that could not be kept at its path.
Result<std::vector<int>> open_carried(Builder& b, wire::ProcessImage::Reader image, const CarriedContents& contents,
                                      int lowest, std::vector<std::string>& notes);
// Once mapped and reopened: seals the memfds as they were and closes the descriptors.
Status close_carried(Builder& b, wire::ProcessImage::Reader image, const std::vector<int>& opened);

}  // namespace ferry::pm
