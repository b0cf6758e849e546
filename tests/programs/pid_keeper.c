/* Prints "round N: ok" for N = 0 .. argv[1]-1, one every argv[2] ms, as long as the process
 * is where it thinks it is: getpid(), gettid(), /proc/self and the pid its own first look gave
 * agree, and raise() (which glibc sends to the thread's cached tid) delivers its signal. Else
 * it prints what disagrees. Moved with its pid kept, its output is the same as unmoved. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t caught;
static void on_usr1(int sig) {
  (void)sig;
  ++caught;
}

static int proc_self_pid(void) {
  char buf[64];
  ssize_t n = readlink("/proc/self", buf, sizeof buf - 1);
  if (n <= 0) return -1;
  buf[n] = 0;
  return atoi(buf);
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  long ms = argc > 2 ? atol(argv[2]) : 5;
  signal(SIGUSR1, on_usr1);
  pid_t first = getpid();
  printf("pid in its namespace: %s\n", first < 100 ? "small" : "large");
  for (int i = 0; i < n; ++i) {
    pid_t pid = getpid(), tid = (pid_t)syscall(SYS_gettid);
    int proc = proc_self_pid();
    int before = caught;
    int rc = raise(SIGUSR1);
    if (pid == first && tid == first && proc == first && rc == 0 && caught == before + 1)
      printf("round %d: ok\n", i);
    else
      printf("round %d: pid %d (first %d), tid %d, /proc/self %d, raise %d, caught %d -> %d\n", i, pid, first, tid,
             proc, rc, before, (int)caught);
    fflush(stdout);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  return 0;
}
