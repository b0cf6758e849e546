/* Usage: timerfd_late_reader ROUNDS. A periodic timerfd (every 10 ms) read late: each round
 * sleeps 50 ms, so the timer has expired and waits unread (the kernel shows no time left on it
 * then), and reads its expirations. Prints "round N: expired" while it keeps going; if nothing
 * comes for 3 s, the timer was lost: it says so and exits 1. */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 100;
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  struct itimerspec every = {{0, 10 * 1000 * 1000}, {0, 10 * 1000 * 1000}};
  timerfd_settime(tfd, 0, &every, NULL);
  for (int r = 0; r < rounds; ++r) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    struct pollfd p = {tfd, POLLIN, 0};
    uint64_t n = 0;
    if (poll(&p, 1, 3000) != 1 || read(tfd, &n, sizeof n) != sizeof n || n == 0) {
      printf("round %d: nothing for 3 s: the timer was lost\n", r);
      return 1;
    }
    printf("round %d: expired\n", r);
    fflush(stdout);
  }
  return 0;
}
