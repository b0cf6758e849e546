/* Refusal cases: argv[1] = "socket" (a TCP socket on fd 3+), "sysv" (SysV shared memory),
 * "threads" (two more threads, and the socket), "unix" (one end of a unix socket pair whose
 * other end a child process holds) or "fifo PATH" (a FIFO made at PATH and opened for reading
 * only). Prints "ready" and sleeps until killed. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void* idle(void* p) {
  (void)p;
  for (;;) pause();
  return NULL;
}

int main(int argc, char** argv) {
  const char* what = argc > 1 ? argv[1] : "socket";
  if (!strcmp(what, "socket") || !strcmp(what, "threads")) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000001);
    bind(s, (struct sockaddr*)&a, sizeof a);
    listen(s, 1);
  } else if (!strcmp(what, "unix")) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    if (fork() == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(sv[0]);
      for (;;) pause();
    }
    close(sv[1]);
  } else if (!strcmp(what, "fifo") && argc > 2) {
    unlink(argv[2]);
    mkfifo(argv[2], 0600);
    open(argv[2], O_RDONLY | O_NONBLOCK);
  } else if (!strcmp(what, "sysv")) {
    int id = shmget(IPC_PRIVATE, 1 << 20, IPC_CREAT | 0600);
    char* p = shmat(id, NULL, 0);
    shmctl(id, IPC_RMID, NULL);  /* gone once it is detached (at exit) */
    p[0] = 1;
  } else if (!strcmp(what, "threads")) {
    pthread_t t;
    pthread_create(&t, NULL, idle, NULL);
    pthread_create(&t, NULL, idle, NULL);
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}
