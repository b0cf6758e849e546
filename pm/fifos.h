// Named pipes (FIFOs) that the process opened by path and holds at both ends, and the bytes
// waiting in any pipe, read without being taken (pipes at capture.cc use it too). Internal to
// pm/ (capture_checks.cc, capture.cc, restore.cc).
//
// What is carried: the path, the FIFO's permission bits, each descriptor's flags, and the
// bytes unread in it. Refused: a FIFO the process holds at one end only (the other end is, or
// will be, another process's).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "dipc/status.h"
#include "pm/image.capnp.h"
#include "pm/proc_info.h"

namespace ferry::pm {

class Builder;

// The bytes waiting in the pipe or FIFO at `fd` of `pid`, copied out with tee(2): they stay
// in it. kUnavailable if they could not all be read.
Result<std::string> peek_pipe(pid_t pid, int fd);

// Whether `f` is a FIFO opened by its path.
bool is_fifo(const OpenFd& f);

// kRefused, naming the descriptor, unless the process (`fds`) holds `f` at both ends: a
// descriptor open for reading and one for writing (or one O_RDWR).
Status check_fifo(const OpenFd& f, const std::vector<OpenFd>& fds);

// Fills kind fifo, its inode (`pipe`), mode and, for a descriptor that reads, the unread bytes.
Status capture_fifo(pid_t pid, const OpenFd& f, wire::OpenFile::Builder out);

// Opens each FIFO of the image by its path (made with mkfifo and its mode if it is missing),
// puts back the bytes that were in it, and puts each descriptor at its number. A FIFO that
// holds exactly the captured bytes already is left as it is: on one machine the frozen source
// still holds the same FIFO open. One that holds other bytes is refused.
Status restore_fifos(Builder& b, wire::ProcessImage::Reader image);

}  // namespace ferry::pm
