// What a process may hold to be moved (ARCHITECTURE.md, "What a migratable process may hold"),
// checked before anything about it is changed. Internal to pm/.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "dipc/status.h"
#include "pm/proc_info.h"

namespace ferry::pm {

// kRefused with a message naming the first thing that cannot move, e.g. "fd 5 is a TCP
// socket", "mapping 7f..-7f.. (/dev/shm/x) is MAP_SHARED", "3 threads: multi-threaded
// processes are not yet supported", "it is being traced by another process".
Status check_movable(pid_t pid, const StatusInfo& status, const std::vector<Vma>& maps,
                     const std::vector<OpenFd>& fds);

// A pipe on fd > 2 moves only when the process holds both its ends and it is empty.
Status check_internal_pipe(pid_t pid, const OpenFd& fd, const std::vector<OpenFd>& fds);

// What kind of socket an inode of `pid` is: "TCP socket", "UDP socket", "unix socket", ...
std::string socket_kind(pid_t pid, const std::string& target);

}  // namespace ferry::pm
