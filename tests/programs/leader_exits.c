/* A process whose main thread calls pthread_exit while its 4 workers go on (as some servers
 * and runtimes do): the workers rewrite their shares of MIB MiB each round, meet at a barrier,
 * and worker 0 prints the round's checksum, the pid and whether the main thread is still a
 * zombie. The output depends only on the arguments.
 *   leader_exits MIB ROUNDS PAUSE_MS */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4

static uint64_t* heap;
static size_t words;
static int rounds, pause_ms;
static pid_t first_pid;
static uint64_t sums[WORKERS];
static pthread_barrier_t barrier;

static const char* leader_state(void) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
  FILE* f = fopen(path, "r");
  if (!f) return "gone";
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char* close = strrchr(buf, ')');
  return close && close[2] == 'Z' ? "zombie" : "running";
}

static void* work(void* arg) {
  int w = (int)(intptr_t)arg;
  for (int r = 0; r < rounds; ++r) {
    uint64_t s = 0;
    for (size_t i = (size_t)w; i < words; i += WORKERS) {
      heap[i] = heap[i] * 6364136223846793005ull + (uint64_t)r + 1;
      s += heap[i] ^ i;
    }
    sums[w] = s;
    pthread_barrier_wait(&barrier);
    if (w == 0) {
      uint64_t total = 0;
      for (int i = 0; i < WORKERS; ++i) total = total * 31 + sums[i];
      printf("round %d: %016llx pid %s main thread %s\n", r, (unsigned long long)total,
             getpid() == first_pid ? "same" : "changed", leader_state());
      fflush(stdout);
    }
    pthread_barrier_wait(&barrier);
    struct timespec ts = {pause_ms / 1000, (long)(pause_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: leader_exits MIB ROUNDS PAUSE_MS\n");
    return 2;
  }
  words = ((size_t)atol(argv[1]) << 20) / 8;
  rounds = atoi(argv[2]);
  pause_ms = atoi(argv[3]);
  first_pid = getpid();
  heap = calloc(words, 8);
  if (!heap) return 1;
  for (size_t i = 0; i < words; ++i) heap[i] = i * 0x9e3779b97f4a7c15ull;
  pthread_barrier_init(&barrier, NULL, WORKERS);
  pthread_t t[WORKERS];
  for (int w = 0; w < WORKERS; ++w) pthread_create(&t[w], NULL, work, (void*)(intptr_t)w);
  pthread_exit(NULL);  /* the process ends when the last worker does */
}
