/* Usage: pipe_buffer ROUNDS MS. The process talks to itself through a pipe: each round it
 * writes three messages into it, sleeps MS ms with them unread (where a freeze lands), then
 * reads them back and prints them. Unread bytes must survive a move, in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 100;
  long ms = argc > 2 ? atol(argv[2]) : 20;
  int p[2];
  if (pipe(p) != 0) return 1;
  for (int r = 0; r < rounds; ++r) {
    char msg[64];
    for (int k = 0; k < 3; ++k) {
      int n = snprintf(msg, sizeof msg, "round %d message %d\n", r, k);
      if (write(p[1], msg, (size_t)n) != n) return 2;
    }
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    char buf[256];
    size_t want = 0;
    for (int k = 0; k < 3; ++k) want += (size_t)snprintf(msg, sizeof msg, "round %d message %d\n", r, k);
    size_t got = 0;
    while (got < want) {
      ssize_t n = read(p[0], buf + got, want - got);
      if (n <= 0) return 3;
      got += (size_t)n;
    }
    fwrite(buf, 1, got, stdout);
    fflush(stdout);
  }
  return 0;
}
