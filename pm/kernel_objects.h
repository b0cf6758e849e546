// Kernel objects behind anonymous-inode descriptors that runtimes hold: eventfd (libuv's and
// the JVM's wake-ups), epoll (every event loop), timerfd, signalfd and inotify (pm/inotify.h). Each is read from
// /proc/PID/fdinfo at capture and made anew at restore with the same state, at the same
// descriptor number (docs/CAPTURE-RESTORE.md, "Kernel objects").
//
// What is carried: an eventfd's counter and semaphore mode; a timerfd's clock, time to the
// next expiration, period and expirations not yet read; a signalfd's mask; an epoll
// instance's interest list (descriptor, events, data). Flags (O_NONBLOCK, O_CLOEXEC) as for
// any descriptor. An epoll instance moves only if every descriptor it watches is open in the
// process and moves too (not another epoll instance, for now).
#pragma once

#include <string_view>
#include <vector>

#include "dipc/status.h"
#include "pm/image.capnp.h"
#include "pm/proc_info.h"

namespace ferry::pm {

class Builder;

// Whether `f` is one of the objects above ("anon_inode:[eventfd]", "[eventpoll]", ...).
bool is_kernel_object(const OpenFd& f);

// kRefused, naming the descriptor, if `f` cannot move (see above); `fds` are `pid`'s.
Status check_kernel_object(pid_t pid, const OpenFd& f, const std::vector<OpenFd>& fds);

// Fills the kind and the object of `out` from `f`'s fdinfo (`pid`'s).
Status capture_kernel_object(pid_t pid, const OpenFd& f, wire::OpenFile::Builder out);

// Makes every kernel object of the image in the process being rebuilt, epoll instances last
// (their watched descriptors must exist). Regular files and pipes are in place already.
Status restore_kernel_objects(Builder& b, wire::ProcessImage::Reader image);

}  // namespace ferry::pm
