/* Fills argv[1] MiB at PATTERN_BASE with the pattern (holes left untouched), says "ready" and
 * waits to be frozen and exported. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pattern.h"

int main(int argc, char** argv) {
  uint64_t mib = argc > 1 ? (uint64_t)atol(argv[1]) : 1024;
  uint64_t pages = mib * 256;
  char* base = mmap((void*)PATTERN_BASE, pages * PATTERN_PAGE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return 2;
  for (uint64_t p = 0; p < pages; ++p) {
    if (pattern_hole(p)) continue;
    uint64_t* w = (uint64_t*)(base + p * PATTERN_PAGE);
    for (uint64_t i = 0; i < PATTERN_PAGE / 8; ++i) w[i] = pattern_word((uint64_t)&w[i]);
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}
