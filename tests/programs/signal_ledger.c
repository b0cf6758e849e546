/* Keeps a ledger of every signal it gets, to prove that none is lost or doubled across moves.
 *
 * From outside (ferry kill): SIGRTMIN (real-time: each one queues, so each must arrive) and
 * SIGUSR2 (standard: the sender waits for "usr2 N" before sending the next, since two pending
 * standard signals merge into one by design).
 * From itself, at random moments: with the signals blocked it queues 1-4 SIGRTMIN+1 carrying
 * sequence numbers (sigqueue) and raises SIGWINCH once, spins 0-5 ms (a freeze finds them
 * pending then), and unblocks them; then it queues a burst of SIGRTMIN+1 unblocked (a freeze
 * that interrupts one of those calls finds that one pending, not yet taken). Each SIGRTMIN+1
 * must arrive once, in order, and each SIGWINCH once.
 *
 * A move changes the process's pid (until jobs keep their pids): a self-addressed signal whose
 * sender read getpid() before a move and signalled after it went to the old process. Such sends
 * (getpid() differs before and after the call) are "uncertain": they may be missing, and are not
 * counted as lost.
 *
 * On SIGUSR1 it prints "ledger rt R usr2 U self S/Q winch W/X errors E" (S and W: received; Q and
 * X: sent, less the uncertain ones that did not arrive) and exits 0. Prints "ready" once its
 * handlers are installed. Argument: a seed (default 1). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_UNCERTAIN 4096

static volatile sig_atomic_t rt, usr2, winch, done, errors;
static volatile long self_next; /* the sequence number the next SIGRTMIN+1 carries at the earliest */
static volatile long self_got;  /* how many arrived */
static volatile long* anon_next; /* a copy of self_next on an anonymous page (served by the pager) */
static volatile long mismatches, skipped;
static long uncertain[MAX_UNCERTAIN];
static volatile int uncertain_count;
static volatile long first_gap = -1;

static int is_uncertain(long seq) {
  for (int i = 0; i < uncertain_count; ++i)
    if (uncertain[i] == seq) return 1;
  return 0;
}

static void on_rt(int s) { (void)s; rt++; }
static void on_usr2(int s) { (void)s; usr2++; }
static void on_winch(int s) { (void)s; winch++; }
static void on_usr1(int s) { (void)s; done = 1; }
static void on_self(int s, siginfo_t* info, void* ctx) {
  (void)s;
  (void)ctx;
  self_got++;
  if (*anon_next != self_next) mismatches++;
  long seq = info->si_code == SI_QUEUE ? info->si_value.sival_int : -1;
  if (seq < self_next) {
    errors++; /* doubled, or out of order */
  } else {
    for (long missing = self_next; missing < seq; ++missing) {
      if (is_uncertain(missing)) {
        skipped++;
      } else {
        errors++;
        if (first_gap < 0) first_gap = missing;
      }
    }
    self_next = seq + 1;
  }
  *anon_next = self_next;
}

static void handle(int sig, void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigaction(sig, &sa, NULL);
}

static void spin_ms(int ms) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do clock_gettime(CLOCK_MONOTONIC, &t);
  while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

static long queued, raised, raised_uncertain;

/* Queues SIGRTMIN+1 with the next sequence number to this process. */
static void queue_self(void) {
  pid_t before = (pid_t)syscall(SYS_getpid);
  union sigval v;
  v.sival_int = (int)queued;
  int r = sigqueue(before, SIGRTMIN + 1, v);
  if ((pid_t)syscall(SYS_getpid) != before && uncertain_count < MAX_UNCERTAIN) uncertain[uncertain_count++] = queued;
  if (r == 0) queued++;
}

static void raise_winch(void) {
  pid_t before = (pid_t)syscall(SYS_getpid);
  raise(SIGWINCH);
  if ((pid_t)syscall(SYS_getpid) != before)
    raised_uncertain++;
  else
    raised++;
}

int main(int argc, char** argv) {
  srand(argc > 1 ? (unsigned)atoi(argv[1]) : 1u);
  anon_next = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  *anon_next = 0;
  handle(SIGRTMIN, on_rt);
  handle(SIGUSR2, on_usr2);
  handle(SIGWINCH, on_winch);
  handle(SIGUSR1, on_usr1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_self;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGRTMIN + 1, &sa, NULL);
  printf("ready\n");
  fflush(stdout);

  sigset_t mine, old;
  sigemptyset(&mine);
  sigaddset(&mine, SIGRTMIN + 1);
  sigaddset(&mine, SIGWINCH);
  int usr2_seen = 0;
  while (!done) {
    sigprocmask(SIG_BLOCK, &mine, &old);
    for (int n = 1 + rand() % 4; n > 0; --n) queue_self();
    raise_winch();
    spin_ms(rand() % 6);
    sigprocmask(SIG_SETMASK, &old, NULL);
    /* A burst of unblocked ones: each is delivered as its sigqueue returns, so a freeze that
     * interrupts the call finds it pending, not yet taken. */
    for (int n = rand() % 300; n > 0; --n) queue_self();
    struct timespec nap = {0, (long)(rand() % 5) * 1000000L};
    nanosleep(&nap, NULL); /* a signal may cut it short: that is fine */
    while (usr2_seen < usr2) {
      printf("usr2 %d\n", ++usr2_seen);
      fflush(stdout);
    }
  }
  /* The last ones may be uncertain too. */
  for (long missing = self_next; missing < queued; ++missing) {
    if (is_uncertain(missing)) {
      skipped++;
    } else {
      errors++;
      if (first_gap < 0) first_gap = missing;
    }
  }
  long winch_sent = raised + ((long)winch > raised ? (long)winch - raised : 0);
  if ((long)winch < raised || (long)winch > raised + raised_uncertain) errors++;
  if (mismatches) printf("memory mismatches %ld\n", (long)mismatches);
  if (first_gap >= 0) printf("first gap: %ld never arrived\n", (long)first_gap);
  printf("uncertain sends (pid changed across the call): %d queued, %ld raised\n", uncertain_count, raised_uncertain);
  printf("ledger rt %d usr2 %d self %ld/%ld winch %d/%ld errors %d\n", (int)rt, (int)usr2, (long)self_got,
         queued - (long)skipped, (int)winch, winch_sent, (int)(errors + mismatches));
  return 0;
}
