/* Usage: posix_timers ROUNDS. POSIX timers of each kind of notification, with sparse ids (a
 * timer made and deleted before each):
 *   A: CLOCK_MONOTONIC, every 10 ms, SIGRTMIN with sigev_value 0xa11ce to the process; its
 *      signal stays blocked and is taken with sigtimedwait once a round, after 35 ms of sleep,
 *      so it overruns: each signal counts 1 + si_overrun ticks.
 *   B: CLOCK_MONOTONIC, every 15 ms, SIGRTMIN+1 to a helper thread (SIGEV_THREAD_ID), which
 *      takes its signals with sigwaitinfo and checks they are its own and carry 0xb0b.
 *   C: SIGEV_NONE, one-shot, an hour away: timer_gettime shows it armed every round.
 *   D: SIGEV_THREAD (glibc's helper thread), every 20 ms, counting calls.
 * Every signal's si_timerid and si_value must be its timer's; any mismatch is printed. A timer
 * silent for 2 s ends the program (exit 1). The last line says whether each timer ticked as
 * often as its period allows, within generous bounds (moves stop the clock of a timer). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static timer_t a, b, c, d;
static atomic_int b_signals, b_wrong, d_calls;
static atomic_int b_tid;

static void* helper(void* p) {
  (void)p;
  b_tid = (int)syscall(SYS_gettid);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGRTMIN + 1);
  for (;;) {
    siginfo_t si;
    if (sigwaitinfo(&s, &si) < 0) continue;
    if (si.si_timerid != (int)(long)b || si.si_value.sival_int != 0xb0b || syscall(SYS_gettid) != b_tid) ++b_wrong;
    ++b_signals;
  }
  return NULL;
}

static void tick(union sigval v) {
  if (v.sival_int == 0xd) ++d_calls;
}

static timer_t make(clockid_t clock, struct sigevent* ev) {
  timer_t gap, t;
  timer_create(CLOCK_MONOTONIC, NULL, &gap); /* its id is skipped */
  if (timer_create(clock, ev, &t) != 0) perror("timer_create"), exit(1);
  timer_delete(gap);
  return t;
}

static void arm(timer_t t, long value_ms, long interval_ms) {
  struct itimerspec it = {{interval_ms / 1000, (interval_ms % 1000) * 1000000}, {value_ms / 1000, (value_ms % 1000) * 1000000}};
  timer_settime(t, 0, &it, NULL);
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 100;
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGRTMIN);
  sigaddset(&s, SIGRTMIN + 1);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  pthread_t th;
  pthread_create(&th, NULL, helper, NULL);
  while (!b_tid) usleep(1000);

  struct sigevent ev = {0};
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGRTMIN;
  ev.sigev_value.sival_int = 0xa11ce;
  a = make(CLOCK_MONOTONIC, &ev);
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = SIGRTMIN + 1;
  ev.sigev_value.sival_int = 0xb0b;
  ev._sigev_un._tid = b_tid;
  b = make(CLOCK_MONOTONIC, &ev);
  ev.sigev_notify = SIGEV_NONE;
  c = make(CLOCK_REALTIME, &ev);
  struct sigevent tev = {0};
  tev.sigev_notify = SIGEV_THREAD;
  tev.sigev_notify_function = tick;
  tev.sigev_value.sival_int = 0xd;
  d = make(CLOCK_MONOTONIC, &tev);
  arm(a, 10, 10);
  arm(b, 15, 15);
  arm(c, 3600 * 1000, 0);
  arm(d, 20, 20);
  printf("timers made with gaps between their ids: %s\n", (long)a < (long)b && (long)b < (long)c ? "yes" : "no");

  long a_ticks = 0;
  int a_signals = 0;
  sigset_t only_a;
  sigemptyset(&only_a);
  sigaddset(&only_a, SIGRTMIN);
  for (int r = 0; r < rounds; ++r) {
    struct timespec ts = {0, 35 * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    siginfo_t si;
    struct timespec wait = {2, 0};
    if (sigtimedwait(&only_a, &si, &wait) < 0) return printf("round %d: timer A is silent\n", r), 1;
    if (si.si_timerid != (int)(long)a || si.si_value.sival_int != 0xa11ce || si.si_code != SI_TIMER)
      printf("round %d: timer A's signal has timer id %d, value %x, code %d\n", r, si.si_timerid, si.si_value.sival_int, si.si_code);
    a_ticks += 1 + si.si_overrun;
    ++a_signals;
    struct itimerspec cur;
    if (timer_gettime(a, &cur) != 0 || cur.it_interval.tv_nsec != 10000000) printf("round %d: timer A lost its period\n", r);
    if (timer_gettime(c, &cur) != 0 || cur.it_value.tv_sec <= 0 || cur.it_value.tv_sec > 3600) printf("round %d: timer C is not armed\n", r);
    if (timer_getoverrun(a) < 0) printf("round %d: timer A's overrun cannot be read\n", r);
    printf("round %d: A ok\n", r);
    fflush(stdout);
  }
  /* About 3.5 ticks of A per round (35 ms / 10 ms); B and D tick every 15 and 20 ms. */
  int b_n = b_signals, d_n = d_calls;
  printf("A: %s, overruns counted: %s; B: %s, all to its thread with its value: %s; D: %s\n",
         a_ticks >= 2L * rounds ? "ticks ok" : "too few ticks", a_ticks > a_signals ? "yes" : "no",
         b_n >= rounds ? "ticks ok" : "too few ticks", b_wrong == 0 ? "yes" : "no", d_n >= rounds ? "ticks ok" : "too few ticks");
  return 0;
}
