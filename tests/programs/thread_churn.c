/* Usage: thread_churn BATCHES PER_BATCH. Threads are born and die all the time: each batch
 * starts PER_BATCH threads that each add their number to a sum and exit, joins them, and prints
 * the sum. A freeze lands while threads are being created and are exiting. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long sum;

static void* add(void* arg) {
  pthread_mutex_lock(&lock);
  sum += (long)(intptr_t)arg;
  pthread_mutex_unlock(&lock);
  return NULL;
}

int main(int argc, char** argv) {
  int batches = argc > 1 ? atoi(argv[1]) : 200;
  int per = argc > 2 ? atoi(argv[2]) : 8;
  pthread_t* ids = calloc((size_t)per, sizeof(pthread_t));
  for (int b = 0; b < batches; ++b) {
    for (int i = 0; i < per; ++i) pthread_create(&ids[i], NULL, add, (void*)(intptr_t)(b * per + i));
    for (int i = 0; i < per; ++i) pthread_join(ids[i], NULL);
    printf("batch %d: sum %ld\n", b, sum);
    fflush(stdout);
  }
  return 0;
}
