/* Usage: omp_rounds MIB ROUNDS MS. OpenMP (8 threads unless OMP_NUM_THREADS says otherwise):
 * each round stirs every word of a MIB MiB array in a parallel loop and sums it in a parallel
 * reduction, prints the sum, and sleeps MS ms. Wrapping sums do not depend on the order the
 * threads add in: the output depends only on the arguments. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
  int rounds = argc > 2 ? atoi(argv[2]) : 20;
  long ms = argc > 3 ? atol(argv[3]) : 50;
  if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(8);
  size_t n = mib * 1024 * 1024 / sizeof(uint64_t);
  uint64_t* a = malloc(n * sizeof(uint64_t));
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) a[i] = i * 2654435761u;
  for (int r = 0; r < rounds; ++r) {
    uint64_t sum = 0;
#pragma omp parallel for schedule(dynamic, 65536) reduction(+ : sum)
    for (size_t i = 0; i < n; ++i) {
      a[i] = a[i] * 6364136223846793005ull + (uint64_t)r;
      sum += a[i] ^ (a[i] >> 29);
    }
    printf("round %d: %016llx (%d threads)\n", r, (unsigned long long)sum, omp_get_max_threads());
    fflush(stdout);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  free(a);
  return 0;
}
