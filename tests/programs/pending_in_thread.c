/* Usage: pending_in_thread ROUNDS MS. A worker thread blocks SIGUSR1 and the main thread sends
 * it one with pthread_kill (queued to the worker alone, with si_code SI_TKILL), then both wait
 * ROUNDS rounds of MS ms, the main thread raising SIGTRAP, which a handler counts, each round.
 * Then the worker unblocks SIGUSR1 and says how many it got (1) and from whom. A process moved
 * meanwhile must keep the worker's pending signal, its kind, and the SIGTRAP handler. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t traps, usr1, usr1_code = 99;
static pthread_barrier_t ready;

static void on_trap(int sig) {
  (void)sig;
  ++traps;
}
static void on_usr1(int sig, siginfo_t* si, void* ctx) {
  (void)sig;
  (void)ctx;
  ++usr1;
  usr1_code = si->si_code;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static int rounds;
static long ms;

static void* worker(void* arg) {
  (void)arg;
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  pthread_barrier_wait(&ready);  /* blocked: now it may be sent */
  pthread_barrier_wait(&ready);  /* sent */
  sleep_ms(ms * rounds + ms / 2);
  pthread_sigmask(SIG_UNBLOCK, &s, NULL);
  printf("worker: %d SIGUSR1 (si_code %s)\n", (int)usr1, usr1_code == SI_TKILL ? "SI_TKILL" : "other");
  fflush(stdout);
  return NULL;
}

int main(int argc, char** argv) {
  rounds = argc > 1 ? atoi(argv[1]) : 20;
  ms = argc > 2 ? atol(argv[2]) : 100;
  struct sigaction sa = {0};
  sa.sa_handler = on_trap;
  sigaction(SIGTRAP, &sa, NULL);
  struct sigaction su = {0};
  su.sa_sigaction = on_usr1;
  su.sa_flags = SA_SIGINFO;
  sigaction(SIGUSR1, &su, NULL);
  pthread_barrier_init(&ready, NULL, 2);
  pthread_t w;
  pthread_create(&w, NULL, worker, NULL);
  pthread_barrier_wait(&ready);
  pthread_kill(w, SIGUSR1);
  pthread_barrier_wait(&ready);
  for (int r = 0; r < rounds; ++r) {
    raise(SIGTRAP);
    printf("round %d: %d traps\n", r, (int)traps);
    fflush(stdout);
    sleep_ms(ms);
  }
  pthread_join(w, NULL);
  return 0;
}
