/* Usage: alarm_ticks TICKS [LATE_MS]. A periodic ITIMER_REAL (every 20 ms, setitimer) paces
 * the process: it waits for each SIGALRM (blocked, taken with sigtimedwait) and prints "alarm
 * N". With LATE_MS it sleeps that long before each wait, so the signal waits undelivered (the
 * kernel shows the timer with no time left then, and arms it again when the signal is taken). If no
 * alarm comes for 3 s, the timer was lost: it says so and exits 1. At the end it prints what a
 * one-shot alarm(2) armed at the start has left (whole seconds). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int ticks = argc > 1 ? atoi(argv[1]) : 200;
  long late_ms = argc > 2 ? atol(argv[2]) : 0;
  sigset_t alrm;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  sigprocmask(SIG_BLOCK, &alrm, NULL);
  struct itimerval every = {{0, 20000}, {0, 20000}};
  setitimer(ITIMER_REAL, &every, NULL);
  struct itimerval prof = {{0, 0}, {3600, 0}};  // an hour of CPU time: it never fires here
  setitimer(ITIMER_PROF, &prof, NULL);
  for (int i = 0; i < ticks; ++i) {
    struct timespec late = {late_ms / 1000, (late_ms % 1000) * 1000000};
    while (late_ms > 0 && nanosleep(&late, &late) != 0) {
    }
    struct timespec limit = {3, 0};
    if (sigtimedwait(&alrm, NULL, &limit) != SIGALRM) {
      printf("no alarm for 3 s after alarm %d: the interval timer was lost\n", i - 1);
      return 1;
    }
    printf("alarm %d\n", i);
    fflush(stdout);
  }
  struct itimerval left;
  getitimer(ITIMER_PROF, &left);
  printf("the profiling timer is %s\n", left.it_value.tv_sec > 3500 ? "still armed" : "lost");
  return 0;
}
