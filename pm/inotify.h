// inotify instances (file watchers: Node's fs.watch under libuv, Python's watchdog, editors).
// Internal to pm/; kernel_objects.cc hands them here.
//
// What is carried: each watch's descriptor number, its mask (with IN_ONESHOT, IN_EXCL_UNLINK)
// and the path of the watched inode, found at capture from the file handle that fdinfo prints
// (open_by_handle_at on this node, then the path of what it opened, checked against the
// inode and device in the process's view); flags (O_NONBLOCK, O_CLOEXEC) as for any
// descriptor. Not carried: events queued unread at the freeze, and events of the freeze
// itself (nothing watches the files while the process is down; docs/CAPTURE-RESTORE.md).
#pragma once

#include <sys/types.h>

#include "dipc/status.h"
#include "pm/image.capnp.h"
#include "pm/proc_info.h"

namespace ferry::pm {

class Builder;

// Whether `f` is an inotify instance ("anon_inode:inotify").
bool is_inotify(const OpenFd& f);

// Fills `out` (when not null) with `f`'s watches and their paths; kRefused, naming the
// descriptor and the watch, when a watched inode's path cannot be found.
Status capture_inotify(pid_t pid, const OpenFd& f, wire::KernelObject::Builder* out);

// Makes the instance anew with inotify_init1 and adds each watch by its path, in order, so that
// each gets its number back: inotify hands out numbers in increasing order, and a number
// below the one wanted is taken and given back (inotify_rm_watch) until the wanted one comes.
// The IN_IGNORED events that this queues are read away before the descriptor is placed.
Status restore_inotify(Builder& b, wire::OpenFile::Reader f);

}  // namespace ferry::pm
