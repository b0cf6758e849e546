/* Usage: fifo_buffer PATH ROUNDS MS. The process makes a FIFO at PATH (mode 0640), opens it
 * at both ends by its path and talks to itself through it, as pipe_buffer does through a
 * pipe: each round it writes three messages, sleeps MS ms with them unread (where a freeze
 * lands), then reads them back and prints them. One message stays in it all along (each round
 * reads the previous round's last). At the end it prints the FIFO's mode and removes it. Nothing
 * to read for 3 s means bytes were lost: it says so and exits 4. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int read_exactly(int fd, char* buf, size_t want) {
  size_t got = 0;
  while (got < want) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 3000) == 0) return printf("nothing to read for 3 s: lost\n"), -1;
    ssize_t n = read(fd, buf + got, want - got);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* path = argv[1];
  int rounds = argc > 2 ? atoi(argv[2]) : 100;
  long ms = argc > 3 ? atol(argv[3]) : 20;
  unlink(path);
  umask(022);
  if (mkfifo(path, 0640) != 0) return perror("mkfifo"), 1;
  int in = open(path, O_RDONLY | O_NONBLOCK); /* a reader first: then the writer's open does not wait */
  int out = open(path, O_WRONLY | O_CLOEXEC);
  if (in < 0 || out < 0) return perror("open"), 1;
  fcntl(in, F_SETFL, 0); /* blocking reads */
  char msg[64], buf[64];
  int n = snprintf(msg, sizeof msg, "carry of round -1\n");
  if (write(out, msg, (size_t)n) != n) return 3;
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 3; ++k) {
      n = snprintf(msg, sizeof msg, "round %d message %d\n", r, k);
      if (write(out, msg, (size_t)n) != n) return 3;
    }
    n = snprintf(msg, sizeof msg, "carry of round %d\n", r);
    if (write(out, msg, (size_t)n) != n) return 3;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    for (int k = -1; k < 3; ++k) {
      n = k < 0 ? snprintf(msg, sizeof msg, "carry of round %d\n", r - 1) : snprintf(msg, sizeof msg, "round %d message %d\n", r, k);
      if (read_exactly(in, buf, (size_t)n) != 0) return 4;
      fwrite(buf, 1, (size_t)n, stdout);
    }
    fflush(stdout);
  }
  struct stat st;
  fstat(in, &st);
  printf("fifo mode %o, reader flags %o, writer cloexec %d\n", st.st_mode & 07777, fcntl(in, F_GETFL) & (O_ACCMODE | O_NONBLOCK),
         (fcntl(out, F_GETFD) & FD_CLOEXEC) != 0);
  unlink(path);
  return 0;
}
