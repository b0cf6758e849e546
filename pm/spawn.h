// Starting a child process with clone3(2), which fork() and vfork() cannot do: with a pid of
// our choosing (set_tid), in new namespaces (CLONE_NEWPID, CLONE_NEWNS), or sharing our memory
// until it execs (CLONE_VM | CLONE_VFORK, as vfork: no page tables to copy, which matters
// inside a migration's freeze).
//
// The child runs `child(arg)` on a stack of its own and exits with its return value; it normally
// ends in execve. When it shares our memory it must only make system calls (no allocation, no
// locks) until then: it runs while the calling thread waits.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace ferry::pm {

struct SpawnOptions {
  uint64_t flags = 0;  // CLONE_* flags (not CLONE_THREAD); SIGCHLD is its exit signal
  pid_t pid = 0;       // its pid in the pid namespace it is born in (set_tid); 0: any free one
};

// The child's pid as the caller sees it, or -errno: EEXIST when `pid` is taken there.
pid_t spawn(const SpawnOptions& options, int (*child)(void*), void* arg);

}  // namespace ferry::pm
