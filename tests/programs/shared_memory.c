/* Shared memory and files that move with a job: MAP_SHARED anonymous memory (half of it never
 * touched, part of it given back with MADV_DONTNEED, which keeps shmem's data), a memfd only
 * mapped, a memfd read and written through its descriptor, POSIX shared memory in /dev/shm, a
 * scratch file unlinked after it was written, and a library replaced on disk after it was
 * loaded (as a package upgrade does). Each round updates every one and prints their checksums:
 * the output depends only on the arguments.
 *   shared_memory MIB ROUNDS PAUSE_MS LIBRARY */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ul

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static uint64_t sum_words(const uint64_t* w, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i) s = s * 31 + w[i];
  return s;
}

/* The words of the 64-page blocks that were written (even ones): the others are never touched,
 * not even read (a read of shared memory makes its page). */
static uint64_t sum_written_blocks(const uint64_t* w, size_t n) {
  const size_t block = 64 * PAGE / 8;
  uint64_t s = 0;
  for (size_t b = 0; b * block < n; b += 2) s = s * 131 + sum_words(w + b * block, n - b * block < block ? n - b * block : block);
  return s;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void copy_file(const char* from, const char* to) {
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  if (in < 0 || out < 0) die("copy the library");
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)n) != n) die("write the library copy");
  close(in);
  close(out);
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: shared_memory MIB ROUNDS PAUSE_MS LIBRARY\n");
    return 2;
  }
  size_t bytes = (size_t)atol(argv[1]) << 20, words = bytes / 8;
  int rounds = atoi(argv[2]), pause_ms = atoi(argv[3]);
  unsigned tag;
  if (getrandom(&tag, sizeof tag, 0) != sizeof tag) die("getrandom");

  /* MAP_SHARED anonymous: every other 64-page block written; a split by mprotect. */
  uint64_t* anon = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (anon == MAP_FAILED) die("mmap shared anonymous");
  for (size_t i = 0; i < words; ++i)
    if ((i * 8 / PAGE / 64) % 2 == 0) anon[i] = mix(i);
  if (mprotect((char*)anon + bytes / 2, PAGE, PROT_READ) != 0) die("mprotect");
  if (mprotect((char*)anon + bytes / 2, PAGE, PROT_READ | PROT_WRITE) != 0) die("mprotect back");
  /* Given back to the page tables, not to shmem: its data stays. */
  if (madvise(anon, 16 * PAGE, MADV_DONTNEED) != 0) die("madvise");

  /* A memfd only mapped. */
  int mfd = memfd_create("ferry-mapped", MFD_CLOEXEC);
  if (mfd < 0 || ftruncate(mfd, (off_t)(bytes / 4)) != 0) die("memfd");
  uint64_t* mapped = mmap(NULL, bytes / 4, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (mapped == MAP_FAILED) die("mmap memfd");
  close(mfd);
  for (size_t i = 0; i < words / 4; i += 3) mapped[i] = mix(i + 7);

  /* A memfd kept open and used through its descriptor. */
  int held = memfd_create("ferry-held", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (held < 0) die("memfd held");
  uint64_t block[512];
  for (int i = 0; i < 512; ++i) block[i] = mix((uint64_t)i + 99);
  if (pwrite(held, block, sizeof block, 0) != sizeof block) die("write the memfd");
  if (fcntl(held, F_ADD_SEALS, F_SEAL_SHRINK) != 0) die("seal");

  /* POSIX shared memory. */
  char shm_name[64];
  snprintf(shm_name, sizeof shm_name, "/ferry-shm-%08x", tag);
  int sfd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (sfd < 0 || ftruncate(sfd, 1 << 20) != 0) die("shm_open");
  uint64_t* shm = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
  if (shm == MAP_FAILED) die("mmap shm");
  close(sfd);
  for (size_t i = 0; i < (1 << 20) / 8; ++i) shm[i] = mix(i + 3);

  /* A scratch file unlinked after it was written. */
  char scratch[64];
  snprintf(scratch, sizeof scratch, "/tmp/ferry-scratch-%08x", tag);
  int tfd = open(scratch, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (tfd < 0) die("create the scratch file");
  if (pwrite(tfd, block, sizeof block, 0) != sizeof block) die("write the scratch file");
  unlink(scratch);

  /* A library loaded, then replaced on disk. */
  char dir[64], lib[96];
  snprintf(dir, sizeof dir, "/tmp/ferry-lib-%08x", tag);
  snprintf(lib, sizeof lib, "%s/libv.so", dir);
  if (mkdir(dir, 0755) != 0) die("mkdir");
  copy_file(argv[4], lib);
  void* h = dlopen(lib, RTLD_NOW);
  if (!h) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  uint64_t (*version_mix)(uint64_t) = (uint64_t(*)(uint64_t))dlsym(h, "version_mix");
  if (!version_mix) die("dlsym");
  char upgraded[112];
  snprintf(upgraded, sizeof upgraded, "%s.new", lib);
  FILE* f = fopen(upgraded, "w");
  if (!f || fputs("not a library any more\n", f) < 0 || fclose(f) != 0) die("write the upgrade");
  if (rename(upgraded, lib) != 0) die("replace the library");

  for (int r = 0; r < rounds; ++r) {
    for (size_t i = (size_t)r % 7; i < words; i += 4099)
      if ((i * 8 / PAGE / 64) % 2 == 0) anon[i] += (uint64_t)r;
    for (size_t i = (size_t)r % 5; i < words / 4; i += 1031) mapped[i] ^= mix((uint64_t)r);
    uint64_t b[512];
    if (pread(held, b, sizeof b, 0) != sizeof b) die("read the memfd");
    b[r % 512] += 1;
    if (pwrite(held, b, sizeof b, 0) != sizeof b) die("write the memfd");
    shm[(size_t)r % ((1 << 20) / 8)] += 17;
    uint64_t t[512];
    if (pread(tfd, t, sizeof t, 0) != sizeof t) die("read the scratch file");
    t[(r * 7) % 512] ^= 0xabcdef;
    if (pwrite(tfd, t, sizeof t, 0) != sizeof t) die("write the scratch file");
    printf("round %d: anon %016llx mapped %016llx held %016llx shm %016llx scratch %016llx lib %016llx\n", r,
           (unsigned long long)sum_written_blocks(anon, words), (unsigned long long)sum_words(mapped, words / 4),
           (unsigned long long)sum_words(b, 512), (unsigned long long)sum_words(shm, (1 << 20) / 8),
           (unsigned long long)sum_words(t, 512), (unsigned long long)version_mix((uint64_t)r));
    fflush(stdout);
    /* Out of the page tables, still in shmem, while it sleeps (and likely is frozen). */
    if (madvise(anon, 16 * PAGE, MADV_DONTNEED) != 0) die("madvise");
    struct timespec ts = {pause_ms / 1000, (long)(pause_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
  }
  shm_unlink(shm_name);
  unlink(lib);
  rmdir(dir);
  return 0;
}
