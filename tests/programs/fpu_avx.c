/* Floating point and AVX state live in registers across the freeze: long dependency chains
 * held in vector registers, whose result depends on every step being exact. */
#include <immintrin.h>
#include <stdio.h>

__attribute__((target("avx2,fma"), noinline)) static double chain(long steps, int round) {
  __m256d a = _mm256_set_pd(1.0, 1.5, 2.0, 2.5);
  __m256d b = _mm256_set1_pd(0.999999);
  __m256d c = _mm256_set_pd(1e-7 * round, 2e-7, 3e-7, 4e-7 + 1e-9 * round);
  for (long i = 0; i < steps; ++i) a = _mm256_fmadd_pd(a, b, c);
  double out[4];
  _mm256_storeu_pd(out, a);
  return out[0] + out[1] * 3 + out[2] * 5 + out[3] * 7;
}

int main(void) {
  double x = 0.1;
  for (int r = 0; r < 40; ++r) {
    double v = chain(40000000, r);
    for (int i = 0; i < 100000; ++i) x = x * 1.0000001 + 1e-9 / (1.0 + x);
    printf("round %d %.17g %.17g\n", r, v, x);
    fflush(stdout);
  }
  return 0;
}
