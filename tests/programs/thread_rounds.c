/* Usage: thread_rounds THREADS ROUNDS MS MIB. THREADS workers each own a slice of a MIB MiB
 * heap. Each round the main thread signals every worker (pthread_kill, SIGUSR1), all meet at a
 * barrier, each worker stirs its slice and checks that its tid is still the one it started with
 * and that it got exactly as many signals as rounds so far, all meet again, and the main thread
 * prints the checksum of the whole heap; then it sleeps MS ms. The output depends only on the
 * arguments, so a run moved between nodes prints what an undisturbed run prints. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int threads, rounds;
static uint64_t* heap;
static size_t words, slice;
static pthread_barrier_t start_barrier, end_barrier;
static __thread int signals_seen;
static int* problems;

static void on_usr1(int sig) {
  (void)sig;
  ++signals_seen;
}

static void* worker(void* arg) {
  int id = (int)(intptr_t)arg;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  uint64_t* mine = heap + (size_t)id * slice;
  for (int r = 0; r < rounds; ++r) {
    pthread_barrier_wait(&start_barrier);
    for (size_t j = 0; j < slice; ++j) mine[j] = mine[j] * 6364136223846793005ull + (uint64_t)(r + id + j);
    if ((pid_t)syscall(SYS_gettid) != tid) problems[id] |= 1;
    if (signals_seen != r + 1) problems[id] |= 2;
    pthread_barrier_wait(&end_barrier);
  }
  return NULL;
}

int main(int argc, char** argv) {
  threads = argc > 1 ? atoi(argv[1]) : 8;
  rounds = argc > 2 ? atoi(argv[2]) : 100;
  long ms = argc > 3 ? atol(argv[3]) : 20;
  size_t mib = argc > 4 ? (size_t)atol(argv[4]) : 64;
  words = mib * 1024 * 1024 / sizeof(uint64_t);
  slice = words / (size_t)threads;
  heap = calloc(words, sizeof(uint64_t));
  problems = calloc((size_t)threads, sizeof(int));
  struct sigaction sa = {0};
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_barrier_init(&start_barrier, NULL, (unsigned)threads + 1);
  pthread_barrier_init(&end_barrier, NULL, (unsigned)threads + 1);
  pthread_t* ids = calloc((size_t)threads, sizeof(pthread_t));
  for (int i = 0; i < threads; ++i) pthread_create(&ids[i], NULL, worker, (void*)(intptr_t)i);
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < threads; ++i) pthread_kill(ids[i], SIGUSR1);
    pthread_barrier_wait(&start_barrier);
    pthread_barrier_wait(&end_barrier);
    uint64_t sum = 0;
    for (size_t j = 0; j < words; ++j) sum = (sum ^ heap[j]) * 0x100000001b3ull;
    int bad = 0;
    for (int i = 0; i < threads; ++i) bad |= problems[i];
    printf("round %d: %016llx%s%s\n", r, (unsigned long long)sum, bad & 1 ? " (a tid changed)" : "",
           bad & 2 ? " (a signal lost or doubled)" : "");
    fflush(stdout);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  for (int i = 0; i < threads; ++i) pthread_join(ids[i], NULL);
  printf("joined %d threads\n", threads);
  return 0;
}
