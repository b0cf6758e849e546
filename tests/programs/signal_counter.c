/* Counts SIGRTMIN (a queued signal: none may be lost, none doubled); on SIGUSR1 prints
 * "count N" and exits 0. Prints "ready" once its handlers are installed. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t count, done;
static void on_rt(int s) { (void)s; count++; }
static void on_usr1(int s) { (void)s; done = 1; }

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_rt;
  sigaction(SIGRTMIN, &sa, NULL);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  printf("ready\n");
  fflush(stdout);
  while (!done) pause();
  printf("count %d\n", (int)count);
  return 0;
}
