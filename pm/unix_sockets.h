// Unix socket pairs whose both ends the process holds (socketpair(AF_UNIX, SOCK_STREAM,
// SOCK_DGRAM or SOCK_SEQPACKET): a worker's control channel to itself, libuv's and Python's
// wake-up pairs). Internal to pm/ (capture_checks.cc, capture.cc, restore.cc).
//
// What is carried: each end's type, what waits to be read at it (datagram and record
// boundaries kept), SO_PASSCRED, SO_RCVTIMEO, SO_SNDTIMEO, SO_SNDBUF, SO_RCVBUF and its
// shutdown state; flags (O_NONBLOCK, O_CLOEXEC) as for
// any descriptor. The queued bytes are read without being taken (MSG_PEEK through a copy of
// the descriptor, pidfd_getfd), so the source still has them if the migration is called off.
// Refused: a unix socket whose peer is not held by the process (another process's, a
// listening or bound socket), one with descriptors in flight (SCM_RIGHTS).
#pragma once

#include <sys/types.h>

#include <vector>

#include "dipc/status.h"
#include "pm/image.capnp.h"
#include "pm/proc_info.h"

namespace ferry::pm {

class Builder;

// Ok if `f` (a socket above fd 2) is one end of a unix socket pair whose other end `fds` (the
// process's) hold above fd 2; kRefused naming the descriptor otherwise; kNotFound if it is
// not a unix socket at all.
Status check_unix_socket(const OpenFd& f, const std::vector<OpenFd>& fds);

// Fills kind unixSocket and `socket` of `out` (check_unix_socket passed). `pid` is frozen.
Status capture_unix_socket(pid_t pid, const OpenFd& f, wire::OpenFile::Builder out);

// Makes every pair of the image anew with socketpair, puts back what waited at each end, its
// options and shutdown state, and puts each end on its descriptors. Runs with the other
// files; descriptors the image uses may be taken only by files already placed.
Status restore_unix_sockets(Builder& b, wire::ProcessImage::Reader image);

}  // namespace ferry::pm
