/* Maps argv[1] MiB at PATTERN_BASE, registers it with its own userfaultfd, prints "uffd FD" and
 * waits for "go" on stdin; then argv[2] threads read (and check every byte of) the pages chosen
 * by argv[3]: "seq" (all, each thread a slice), "stride" (every 4th page), "random" (a random
 * quarter), "half" (the first half, sequentially). Each checked page is then written and
 * re-read. Prints "checked N mismatches M" and, if argv[4] is "hold", waits for a line on stdin
 * before exiting. Exit status 0 iff nothing mismatched. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pattern.h"

static uint64_t pages, threads;
static const char* mode;
static char* base;
static uint64_t checked[64], mismatches[64];

static void check_page(int t, uint64_t p) {
  uint64_t* w = (uint64_t*)(base + p * PATTERN_PAGE);
  for (uint64_t i = 0; i < PATTERN_PAGE / 8; ++i) {
    uint64_t want = pattern_hole(p) ? 0 : pattern_word((uint64_t)&w[i]);
    if (w[i] != want) ++mismatches[t];
  }
  w[3] ^= 0xffull; /* a write after the fault */
  uint64_t want3 = (pattern_hole(p) ? 0 : pattern_word((uint64_t)&w[3])) ^ 0xffull;
  if (w[3] != want3) ++mismatches[t];
  ++checked[t];
}

static void* worker(void* arg) {
  int t = (int)(intptr_t)arg;
  if (!strcmp(mode, "seq") || !strcmp(mode, "half")) {
    uint64_t n = !strcmp(mode, "half") ? pages / 2 : pages;
    uint64_t per = (n + threads - 1) / threads;
    for (uint64_t p = t * per; p < (t + 1) * per && p < n; ++p) check_page(t, p);
  } else if (!strcmp(mode, "stride")) {
    for (uint64_t p = (uint64_t)t * 4; p < pages; p += 4 * threads) check_page(t, p);
  } else { /* random: each thread its share of a random quarter; a page may be hit twice */
    uint64_t x = 0x2545f4914f6cdd1dull * (uint64_t)(t + 1);
    for (uint64_t k = 0; k < pages / 4 / threads; ++k) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      uint64_t p = x % pages;
      uint64_t* w = (uint64_t*)(base + p * PATTERN_PAGE);
      /* Another thread may have flipped word 3 already: check the rest of the page. */
      for (uint64_t i = 0; i < PATTERN_PAGE / 8; ++i)
        if (i != 3 && w[i] != (pattern_hole(p) ? 0 : pattern_word((uint64_t)&w[i]))) ++mismatches[t];
      ++checked[t];
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  uint64_t mib = argc > 1 ? (uint64_t)atol(argv[1]) : 1024;
  threads = argc > 2 ? (uint64_t)atol(argv[2]) : 4;
  mode = argc > 3 ? argv[3] : "seq";
  int hold = argc > 4 && !strcmp(argv[4], "hold");
  if (threads < 1 || threads > 64) return 2;
  pages = mib * 256;
  base = mmap((void*)PATTERN_BASE, pages * PATTERN_PAGE, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return 2;
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (uffd < 0) return 3;
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  if (ioctl(uffd, UFFDIO_API, &api)) return 3;
  struct uffdio_register reg = {.range = {(uint64_t)base, pages * PATTERN_PAGE}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg)) return 3;
  printf("uffd %d\n", uffd);
  fflush(stdout);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) return 4;
  pthread_t tid[64];
  for (uint64_t t = 0; t < threads; ++t) pthread_create(&tid[t], NULL, worker, (void*)(intptr_t)t);
  uint64_t c = 0, m = 0;
  for (uint64_t t = 0; t < threads; ++t) {
    pthread_join(tid[t], NULL);
    c += checked[t];
    m += mismatches[t];
  }
  printf("checked %llu mismatches %llu\n", (unsigned long long)c, (unsigned long long)m);
  fflush(stdout);
  if (hold && !fgets(line, sizeof line, stdin)) return 4;
  return m == 0 ? 0 : 1;
}
