/* Spends its life in nanosleep and pause-like waits: freezes land inside blocking syscalls. */
#include <stdio.h>
#include <time.h>

int main(int argc, char** argv) {
  int n = 60;
  for (int i = 0; i < n; ++i) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    printf("tick %d\n", i);
    fflush(stdout);
  }
  printf("done\n");
  return 0;
}
