/* The benchmarks' memory-heavy job: fills MIB of anonymous memory, prints "ready", then makes
 * ACCESSES page accesses in one of three patterns and prints its progress counter with a
 * timestamp at least every 0.5 ms:
 *
 *   memory_job MIB seq|random-10%|random-100% ACCESSES [SEED] [THREADS]
 *
 * With THREADS > 1, THREADS - 1 more threads wait on a condition variable for ever (as the idle
 * threads of a runtime's pool do): the threads benchmark moves them with the job.
 *
 *   seq          page after page through all of its memory, round after round
 *   random-10%   random pages of a hot set: a contiguous tenth of its memory, in the middle
 *   random-100%  random pages anywhere in its memory
 *
 * Every access reads and rewrites one word of the page (a different word each time). Output
 * lines, each written with one write(2) so that nothing is buffered across a migration:
 *
 *   ready PAGES                 memory filled
 *   p T_US COUNT                CLOCK_MONOTONIC in microseconds, accesses made so far
 *   done COUNT CHECKSUM         after the last access: a checksum of all of its memory
 *
 * Two more `p` lines come before `done`: one after the last access and one after the checksum
 * (the job's completion time). The checksum depends only on the arguments, so a migrated run is
 * checked against one that was not. ACCESSES 0 runs until killed.
 *
 * The clock is looked at after every access, so that the first line after a freeze comes right
 * after the first access the resumed job could make (its downtime as its output shows it). On
 * x86-64 and arm64 that look is the CPU's counter (rdtsc, cntvct: a few ns, not serialising, so
 * the random patterns keep their memory-level parallelism), calibrated against CLOCK_MONOTONIC at
 * the start; elsewhere CLOCK_MONOTONIC every 16 accesses. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t ticks(void) { return __rdtsc(); }
#define HAVE_TICKS 1
#elif defined(__aarch64__)
static inline uint64_t ticks(void) {
  uint64_t v;
  __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
  return v;
}
#define HAVE_TICKS 1
#else
#define HAVE_TICKS 0
#endif

static void say(const char* line) {
  size_t n = strlen(line);
  while (n > 0) {
    ssize_t w = write(1, line, n);
    if (w <= 0) return;
    line += w;
    n -= (size_t)w;
  }
}

static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;

static void* idle(void* arg) {
  (void)arg;
  pthread_mutex_lock(&idle_lock);
  for (;;) pthread_cond_wait(&idle_cond, &idle_lock);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    say("usage: memory_job MIB seq|random-10%|random-100% ACCESSES [SEED] [THREADS]\n");
    return 2;
  }
  const uint64_t mib = strtoull(argv[1], NULL, 10);
  const char* pattern = argv[2];
  const uint64_t accesses = strtoull(argv[3], NULL, 10);
  uint64_t rng = argc > 4 ? strtoull(argv[4], NULL, 10) : 0x2545f4914f6cdd1dull;
  if (rng == 0) rng = 1;
  const long threads = argc > 5 ? atol(argv[5]) : 1;
  for (long t = 1; t < threads; ++t) {
    pthread_t id;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    if (pthread_create(&id, &a, idle, NULL) != 0) return 3;
  }
  const uint64_t pages = mib * 256, words_per_page = 512;
  uint64_t hot_first = 0, hot_pages = pages;
  int sequential = 0;
  if (strcmp(pattern, "seq") == 0)
    sequential = 1;
  else if (strcmp(pattern, "random-10%") == 0)
    hot_pages = pages / 10 ? pages / 10 : 1, hot_first = (pages - hot_pages) / 2;
  else if (strcmp(pattern, "random-100%") != 0) {
    say("memory_job: the pattern is seq, random-10% or random-100%\n");
    return 2;
  }
  uint64_t* mem =
      mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    say("memory_job: cannot map its memory\n");
    return 2;
  }
  for (uint64_t p = 0; p < pages; ++p)
    for (uint64_t w = 0; w < words_per_page; w += 64)
      mem[p * words_per_page + w] = (p << 9 | w) * 0x9e3779b97f4a7c15ull;
  char line[128];
  snprintf(line, sizeof line, "ready %llu\n", (unsigned long long)pages);
  say(line);

  uint64_t page = 0, count = 0, last = now_us();
#if HAVE_TICKS
  /* The clock is read every 0.1 ms of counter ticks (measured over 20 ms of both). */
  const uint64_t tick0 = ticks();
  while (now_us() - last < 20000) {
  }
  uint64_t ticks_per_check = (ticks() - tick0) / 200;
  if (ticks_per_check == 0) ticks_per_check = 1;
  uint64_t last_tick = ticks();
  last = now_us();
#endif
  snprintf(line, sizeof line, "p %llu 0\n", (unsigned long long)last);
  say(line);
  while (accesses == 0 || count < accesses) {
    if (sequential) {
      page = page + 1 == pages ? 0 : page + 1;
    } else {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      page = hot_first + rng % hot_pages;
    }
    uint64_t* word = &mem[page * words_per_page + (count & (words_per_page - 1))];
    *word = *word * 31 + count;
    ++count;
#if HAVE_TICKS
    const uint64_t tick = ticks();
    if (tick - last_tick >= ticks_per_check) { /* also after a move to a counter behind ours */
      last_tick = tick;
#else
    if ((count & 15) == 0) {
#endif
      uint64_t t = now_us();
      if (t - last >= 500) {
        last = t;
        snprintf(line, sizeof line, "p %llu %llu\n", (unsigned long long)t,
                 (unsigned long long)count);
        say(line);
      }
    }
  }
  snprintf(line, sizeof line, "p %llu %llu\n", (unsigned long long)now_us(),
           (unsigned long long)count);
  say(line);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < pages * words_per_page; ++i) sum = sum * 0x100000001b3ull + mem[i];
  snprintf(line, sizeof line, "p %llu %llu\n", (unsigned long long)now_us(),
           (unsigned long long)count);
  say(line);
  snprintf(line, sizeof line, "done %llu %016llx\n", (unsigned long long)count,
           (unsigned long long)sum);
  say(line);
  return 0;
}
