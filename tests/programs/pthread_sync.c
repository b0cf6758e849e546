/* Usage: pthread_sync TICKS MS. Synchronisation that depends on tids and on the kernel's
 * per-thread state, held across moves while the main thread prints TICKS ticks MS ms apart:
 *  - a priority-inheritance mutex held by one thread while another waits for it in the kernel
 *    (FUTEX_LOCK_PI names the owner by its tid);
 *  - a robust mutex whose owner exits holding it (the kernel walks the robust list the thread
 *    registered and the next locker gets EOWNERDEAD);
 *  - a condition variable a thread waits on until the end.
 * Then it prints what each thread saw. The output depends only on the arguments. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t pi, robust, lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static atomic_int holder_has_it, holder_done, go;
static int waiter_rc = -1, waiter_saw_done = 0, dier_locked = 0, cond_woken = 0;
static long hold_ms;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void* holder(void* p) {
  (void)p;
  pthread_mutex_lock(&pi);
  holder_has_it = 1;
  sleep_ms(hold_ms);
  holder_done = 1;
  pthread_mutex_unlock(&pi);
  return NULL;
}

static void* waiter(void* p) {
  (void)p;
  while (!holder_has_it) sleep_ms(1);
  waiter_rc = pthread_mutex_lock(&pi);  // waits in the kernel, on the holder's tid
  waiter_saw_done = holder_done;
  pthread_mutex_unlock(&pi);
  return NULL;
}

static void* dier(void* p) {
  (void)p;
  dier_locked = pthread_mutex_lock(&robust) == 0;
  sleep_ms(hold_ms / 2);
  return NULL;  // exits holding it
}

static void* cond_waiter(void* p) {
  (void)p;
  pthread_mutex_lock(&lock);
  while (!go) pthread_cond_wait(&cond, &lock);
  cond_woken = 1;
  pthread_mutex_unlock(&lock);
  return NULL;
}

int main(int argc, char** argv) {
  int ticks = argc > 1 ? atoi(argv[1]) : 100;
  long ms = argc > 2 ? atol(argv[2]) : 20;
  hold_ms = ticks * ms / 2;
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
  pthread_mutex_init(&pi, &a);
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&robust, &a);
  pthread_t t[4];
  pthread_create(&t[0], NULL, holder, NULL);
  pthread_create(&t[1], NULL, waiter, NULL);
  pthread_create(&t[2], NULL, dier, NULL);
  pthread_create(&t[3], NULL, cond_waiter, NULL);
  for (int i = 0; i < ticks; ++i) {
    printf("tick %d\n", i);
    fflush(stdout);
    sleep_ms(ms);
  }
  pthread_mutex_lock(&lock);
  go = 1;
  pthread_cond_signal(&cond);
  pthread_mutex_unlock(&lock);
  for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
  int rc = pthread_mutex_lock(&robust);
  if (rc == EOWNERDEAD) pthread_mutex_consistent(&robust);
  printf("pi mutex: waiter locked it (%s) after the holder let go (%s)\n", waiter_rc == 0 ? "ok" : "failed",
         waiter_saw_done ? "yes" : "no");
  printf("robust mutex: the dead owner's lock came back as %s\n", rc == EOWNERDEAD ? "EOWNERDEAD" : rc == 0 ? "0" : "an error");
  printf("condition variable: waiter woken (%s), dier had locked (%s)\n", cond_woken ? "yes" : "no", dier_locked ? "yes" : "no");
  return 0;
}
