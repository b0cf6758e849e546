/* Prints "line N" for N = 0 .. argv[1]-1, one every argv[2] ms: a stream in which a gap or a
 * duplicate shows. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  long ms = argc > 2 ? atol(argv[2]) : 5;
  for (int i = 0; i < n; ++i) {
    printf("line %d\n", i);
    fflush(stdout);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  return 0;
}
