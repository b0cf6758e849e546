/* Usage: vfork_waiter SECONDS. The process vforks a child that sleeps SECONDS before it exits:
 * until then the parent waits in the kernel in an uninterruptible sleep (state D), where
 * nothing can stop it. Prints "waiting", then "done" once the child has gone. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int seconds = argc > 1 ? atoi(argv[1]) : 8;
  printf("waiting\n");
  fflush(stdout);
  pid_t child = vfork();
  if (child == 0) {
    struct timespec ts = {seconds, 0};
    while (nanosleep(&ts, &ts) != 0) {
    }
    _exit(0);
  }
  waitpid(child, NULL, 0);
  printf("done\n");
  return 0;
}
