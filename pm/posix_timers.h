// POSIX timers (timer_create): a program's periodic ticks and timeouts, and glibc's SIGEV_THREAD
// timers (which the kernel sees as SIGEV_THREAD_ID timers aimed at glibc's helper thread).
// Internal to pm/ (capture_checks.cc, capture.cc, restore.cc).
//
// What is carried: each timer's id (the program's timer_t), clock, notification (SIGEV_SIGNAL,
// SIGEV_NONE, SIGEV_THREAD_ID with the thread), signal and sigev_value (/proc/PID/timers),
// time to the next expiration and period (timer_gettime injected into the frozen process). A
// timer stands still during the downtime, as the process does; an absolute timer comes back
// relative. Overruns: see restore_posix_timers.
#pragma once

#include <sys/types.h>

#include <vector>

#include "dipc/status.h"
#include "pm/image.capnp.h"

namespace ferry::pm {

class Builder;
class Tracee;

// kRefused, naming the timer, for a timer that cannot move: one on another process's or
// thread's CPU clock, or on a thread's CPU clock in a process of several threads (which thread
// it counts is not shown).
Status check_posix_timers(pid_t pid, int threads);

// Fills image.posixTimers. `leader` is the frozen process's leader with its syscall site set;
// `scratch` is the address of an itimerspec's worth of its memory that the caller saves and
// puts back. The image's threads and pending signals must be captured already: a periodic
// timer whose signal waits undelivered is armed a period away (as setitimer's are, capture.cc).
Status capture_posix_timers(Tracee& leader, uint64_t scratch, wire::ProcessImage::Builder image);

// Makes each timer again with its id (prctl PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15+) and arms
// it. `tids` are the process's threads as it sees them, in the image's order (leader first):
// a SIGEV_THREAD_ID timer goes to the same thread. Must run after the threads are made. The
// overrun count of the last signal taken (what timer_getoverrun returns) starts again at 0:
// the kernel offers no way to set it; a timer signal that waited moves with its siginfo,
// si_overrun included, as any pending signal does.
Status restore_posix_timers(Builder& b, wire::ProcessImage::Reader image,
                            const std::vector<pid_t>& tids);

}  // namespace ferry::pm
