/* Usage: socket_pairs ROUNDS MS. The process talks to itself over unix socket pairs of each
 * type (stream, datagram, seqpacket). Each round it sends three messages each way on every
 * pair and sleeps MS ms with them unread (where a freeze lands), then reads them back and
 * prints them: one recv per message, so datagram and record boundaries show. Each pair also
 * keeps one message in flight all along (it reads the previous round's), so there is always
 * something unread. A fourth pair was shut down for writing at one end at the start: each
 * round shows that its other end still reads end-of-file and that sending on it fails. Flags
 * (O_NONBLOCK, FD_CLOEXEC), SO_PASSCRED, SO_RCVTIMEO and SO_SNDBUF are printed too. Nothing to read for 3 s means
 * something unread was lost: it says so and exits 1. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char* names[3] = {"stream", "dgram", "seqpacket"};
static const int types[3] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};

/* Nothing to read for 3 s: what was unread at a move was lost. */
static void await_data(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 3000) == 0) printf("nothing to read for 3 s on fd %d: lost\n", fd), exit(1);
}

static int recv_one(int fd, int type, char* buf, size_t want) {
  /* A stream has no boundaries: read exactly the length of the message expected. */
  if (type == SOCK_STREAM) {
    size_t got = 0;
    while (got < want) {
      await_data(fd);
      ssize_t n = recv(fd, buf + got, want - got, 0);
      if (n <= 0) return -1;
      got += (size_t)n;
    }
    return (int)got;
  }
  await_data(fd);
  return (int)recv(fd, buf, 256, 0);
}

static void say(int r, const char* name, const char* dir, int k, int expect_len, const char* buf, int n) {
  if (n != expect_len) printf("round %d %s %s message %d: %d bytes, expected %d\n", r, name, dir, k, n, expect_len);
  else printf("round %d %s %s: %.*s\n", r, name, dir, n, buf);
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 100;
  long ms = argc > 2 ? atol(argv[2]) : 20;
  signal(SIGPIPE, SIG_IGN);
  int sv[3][2];
  for (int i = 0; i < 3; ++i)
    if (socketpair(AF_UNIX, types[i] | (i == 1 ? SOCK_CLOEXEC : 0), 0, sv[i]) != 0) return 1;
  fcntl(sv[0][1], F_SETFL, O_NONBLOCK);
  int one = 1;
  setsockopt(sv[2][0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  struct timeval timeout = {2, 500000};
  setsockopt(sv[0][0], SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  int size = 65536;
  setsockopt(sv[1][0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  int down[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, down) != 0) return 1;
  if (write(down[0], "last words", 10) != 10) return 1;
  shutdown(down[0], SHUT_WR);
  char msg[64], buf[256];
  /* What stays in flight: round -1's messages, read in round 0. */
  for (int i = 0; i < 3; ++i)
    for (int e = 0; e < 2; ++e) {
      int n = snprintf(msg, sizeof msg, "%s carry from %d round -1", names[i], e);
      send(sv[i][e], msg, (size_t)n, 0);
    }
  char last[16] = {0};
  if (recv(down[1], last, 5, 0) != 5) return 1; /* "last " read, "words" stay */
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < 3; ++i)
      for (int e = 0; e < 2; ++e)
        for (int k = 0; k < 3; ++k) {
          int n = snprintf(msg, sizeof msg, "%s from %d round %d message %d", names[i], e, r, k);
          if (send(sv[i][e], msg, (size_t)n, 0) != n) printf("round %d %s: send: %s\n", r, names[i], strerror(errno));
        }
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    for (int i = 0; i < 3; ++i)
      for (int e = 0; e < 2; ++e) {
        const char* dir = e == 0 ? "0->1" : "1->0";
        int n = snprintf(msg, sizeof msg, "%s carry from %d round %d", names[i], e, r - 1);
        say(r, names[i], dir, -1, n, buf, recv_one(sv[i][1 - e], types[i], buf, (size_t)n));
        for (int k = 0; k < 3; ++k) {
          n = snprintf(msg, sizeof msg, "%s from %d round %d message %d", names[i], e, r, k);
          say(r, names[i], dir, k, n, buf, recv_one(sv[i][1 - e], types[i], buf, (size_t)n));
        }
        n = snprintf(msg, sizeof msg, "%s carry from %d round %d", names[i], e, r);
        send(sv[i][e], msg, (size_t)n, 0);
      }
    int passcred = 0, sndbuf = 0;
    socklen_t len = sizeof passcred;
    getsockopt(sv[2][0], SOL_SOCKET, SO_PASSCRED, &passcred, &len);
    len = sizeof sndbuf;
    getsockopt(sv[1][0], SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
    struct timeval tv = {0, 0};
    len = sizeof tv;
    getsockopt(sv[0][0], SOL_SOCKET, SO_RCVTIMEO, &tv, &len);
    char peek[16] = {0};
    ssize_t words = recv(down[1], peek, sizeof peek, MSG_PEEK);
    errno = 0;
    ssize_t sent = send(down[0], "x", 1, MSG_DONTWAIT);
    printf("round %d: stream nonblock %d, receive timeout %ld.%06ld s; dgram cloexec %d, send buffer %d; "
           "seqpacket passcred %d, shut down pair holds '%.*s', send there: %s\n",
           r, (fcntl(sv[0][1], F_GETFL) & O_NONBLOCK) != 0, (long)tv.tv_sec, (long)tv.tv_usec,
           (fcntl(sv[1][0], F_GETFD) & FD_CLOEXEC) != 0, sndbuf, passcred,
           (int)(words > 0 ? words : 0), peek, sent < 0 ? strerror(errno) : "sent");
    fflush(stdout);
  }
  char rest[16] = {0};
  ssize_t n = recv(down[1], rest, sizeof rest, 0);
  ssize_t eof = recv(down[1], rest + 8, 1, 0);
  printf("shut down pair: '%.*s', then %s\n", (int)n, rest, eof == 0 ? "end of file" : "more");
  return 0;
}
