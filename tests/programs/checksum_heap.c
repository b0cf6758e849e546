/* A checksum loop over a large heap (argv[1] MiB, default 256): fills it, then sums it round
 * after round, printing a line per round. Output depends only on the arguments. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
  int rounds = argc > 2 ? atoi(argv[2]) : 40;
  size_t words = mib << 17; /* 8-byte words */
  uint64_t* heap = malloc(words * sizeof(uint64_t));
  if (!heap) return 2;
  for (size_t i = 0; i < words; ++i) heap[i] = i * 0x9e3779b97f4a7c15ull;
  uint64_t sum = 0;
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = (size_t)r % 8; i < words; i += 8) {
      heap[i] ^= sum + (uint64_t)r;
      sum = sum * 31 + heap[i];
    }
    printf("round %d checksum %016llx\n", r, (unsigned long long)sum);
    fflush(stdout);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  printf("done %016llx\n", (unsigned long long)sum);
  return 0;
}
