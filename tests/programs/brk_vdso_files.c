/* brk growth, vDSO clocks and regular files at offsets, across restores:
 * grows the heap with sbrk each round, checks CLOCK_MONOTONIC never goes back and that
 * time() works (through the vDSO), writes records at offsets into a file and reads earlier
 * ones back, and reads a private file mapping it modified. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "brk_vdso_files.dat";
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 2;
  char rec[64];
  memset(rec, 'x', sizeof rec);
  for (int i = 0; i < 64; ++i) pwrite(fd, rec, sizeof rec, i * (off_t)sizeof rec);
  unsigned char* map = mmap(NULL, 64 * 64, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return 3;
  struct timespec last;
  clock_gettime(CLOCK_MONOTONIC, &last);
  uint64_t sum = 0;
  for (int r = 0; r < 40; ++r) {
    unsigned char* grown = sbrk(64 * 1024);
    if (grown == (void*)-1) return 4;
    for (int i = 0; i < 64 * 1024; i += 512) grown[i] = (unsigned char)(r + i);
    for (int i = 0; i < 64 * 1024; i += 512) sum = sum * 7 + grown[i];
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int backwards = now.tv_sec < last.tv_sec || (now.tv_sec == last.tv_sec && now.tv_nsec < last.tv_nsec);
    last = now;
    snprintf(rec, sizeof rec, "record %02d sum %016llx", r, (unsigned long long)sum);
    pwrite(fd, rec, sizeof rec, (off_t)(r % 64) * (off_t)sizeof rec);
    char back[64];
    pread(fd, back, sizeof back, (off_t)((r / 2) % 64) * (off_t)sizeof back);
    map[r * 64] = (unsigned char)('A' + r % 26); /* a private modification: not in the file */
    uint64_t msum = 0;
    for (int i = 0; i < 64 * 64; ++i) msum = msum * 3 + map[i];
    printf("round %d sum %016llx back %.9s map %016llx clock %s time %s\n", r, (unsigned long long)sum, back,
           (unsigned long long)msum, backwards ? "WENT-BACK" : "ok", time(NULL) > 1700000000 ? "ok" : "BAD");
    fflush(stdout);
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  close(fd);
  unlink(path);
  return 0;
}
