/* Signal state across a restore: a handler for SIGUSR1, SIGUSR2 blocked with one pending, and
 * SIGTERM ignored. Counts what arrives; the pending SIGUSR2 must be delivered exactly once when
 * it is unblocked at the end, and the handler must still be installed. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, usr2;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2++; }

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
  signal(SIGTERM, SIG_IGN);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  sigprocmask(SIG_BLOCK, &block, NULL);
  kill(getpid(), SIGUSR2); /* pending from now on */
  for (int i = 0; i < 40; ++i) {
    kill(getpid(), SIGUSR1);
    struct timespec ts = {0, 40 * 1000 * 1000};
    nanosleep(&ts, NULL);
    printf("step %d usr1 %d usr2 %d\n", i, (int)usr1, (int)usr2);
    fflush(stdout);
  }
  sigset_t pending;
  sigpending(&pending);
  printf("usr2 pending before unblock: %d\n", sigismember(&pending, SIGUSR2));
  sigprocmask(SIG_UNBLOCK, &block, NULL);
  printf("final usr1 %d usr2 %d\n", (int)usr1, (int)usr2);
  return 0;
}
