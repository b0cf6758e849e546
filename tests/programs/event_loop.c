/* Usage: event_loop TICKS. An event loop as runtimes have them (libuv, the JVM): one epoll
 * instance watches a periodic timerfd (every 10 ms), an eventfd that a second thread bumps
 * (one unit every 7 ms, 2 * TICKS / 10 units in all) and a signalfd for SIGUSR1, which the
 * loop sends itself every 20 ticks. It prints "tick N" for every expiration of the timer
 * (however many one read returns), and at the end how much of each it got. The output depends
 * only on the argument, however the moves fall. Nothing for 3 s: it says so and exits 1. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int efd, units;

static void* bumper(void* arg) {
  (void)arg;
  for (int i = 0; i < units; ++i) {
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) != sizeof one) return NULL;
    struct timespec ts = {0, 7 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  int ticks = argc > 1 ? atoi(argv[1]) : 300;
  units = 2 * ticks / 10;
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  struct itimerspec every = {{0, 10 * 1000 * 1000}, {0, 10 * 1000 * 1000}};
  timerfd_settime(tfd, 0, &every, NULL);
  efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  int sfd = signalfd(-1, &usr1, SFD_NONBLOCK | SFD_CLOEXEC);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
  epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
  ev.data.u64 = 2;
  epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = 3;
  epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
  pthread_t t;
  pthread_create(&t, NULL, bumper, NULL);
  int seen = 0, signals_sent = 0, signals_got = 0;
  uint64_t got_units = 0;
  int idle_ms = 0;
  while (seen < ticks || got_units < (uint64_t)units || signals_got < signals_sent) {
    struct epoll_event out[4];
    int n = epoll_wait(ep, out, 4, 1000);
    idle_ms = n > 0 ? 0 : idle_ms + 1000;
    if (idle_ms >= 3000) {  // the timer ticks every 10 ms: it was lost
      printf("nothing for 3 s after tick %d (%llu units, %d signals): the timer was lost\n", seen - 1,
             (unsigned long long)got_units, signals_got);
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      if (out[i].data.u64 == 1) {
        uint64_t expirations = 0;
        if (read(tfd, &expirations, sizeof expirations) != sizeof expirations) continue;
        for (uint64_t k = 0; k < expirations && seen < ticks; ++k) {
          printf("tick %d\n", seen++);
          if (seen % 20 == 0) {
            kill(getpid(), SIGUSR1);
            ++signals_sent;
          }
        }
        fflush(stdout);
      } else if (out[i].data.u64 == 2) {
        uint64_t v = 0;
        if (read(efd, &v, sizeof v) == sizeof v) got_units += v;
      } else {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == sizeof si) ++signals_got;
      }
    }
  }
  pthread_join(t, NULL);
  printf("eventfd: %llu of %d units; signalfd: %d of %d signals\n", (unsigned long long)got_units, units, signals_got,
         signals_sent);
  return 0;
}
