/* A job with a large cold heap and a small hot set, the kind precopy is for: fills argv[1] MiB
 * (default 256), then for argv[2] rounds (default 40) rewrites random words of the first tenth
 * of its pages only, and prints a checksum of all of its memory each round, sleeping
 * argv[3] ms (default 50) between rounds. Output depends only on the first two arguments. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
  int rounds = argc > 2 ? atoi(argv[2]) : 40;
  long pause_ms = argc > 3 ? atol(argv[3]) : 50;
  size_t words = mib << 17, hot = words / 10;
  uint64_t* heap = malloc(words * sizeof(uint64_t));
  if (!heap) return 2;
  for (size_t i = 0; i < words; ++i) heap[i] = i * 0x9e3779b97f4a7c15ull;
  uint64_t rng = 88172645463325252ull;
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 20000; ++k) {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      heap[rng % hot] += rng;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < words; i += 64) sum = sum * 31 + heap[i];
    printf("round %d checksum %016llx\n", r, (unsigned long long)sum);
    fflush(stdout);
    struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000 * 1000};
    if (r + 1 < rounds && nanosleep(&ts, NULL) != 0) printf("sleep cut short: errno %d\n", errno);
  }
  printf("done\n");
  return 0;
}
