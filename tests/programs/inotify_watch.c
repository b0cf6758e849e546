/* Usage: inotify_watch DIR ROUNDS MS. The process watches DIR (made afresh) and DIR/sub with
 * inotify for files created, with a watch made and removed between them so that the numbers
 * have a gap (1 and 3). Each round it creates DIR/fR and DIR/sub/gR and waits for both events,
 * checking that each names the watch number inotify_add_watch returned; then sleeps MS ms.
 * Events the freeze of a move swallows are lost: a wait of 300 ms without the event creates
 * the file again under another name (fR.again) and waits anew; 20 such tries without it end
 * the program (exit 1). It prints the same lines however many tries were needed. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fd;

static void touch(const char* path) {
  int f = open(path, O_CREAT | O_WRONLY, 0644);
  if (f >= 0) close(f);
}

/* Waits for IN_CREATE of `name` (or name.again...) on watch `wd`; other events are skipped. */
static int await(int wd, const char* dir, const char* name) {
  char path[PATH_MAX + 2 * NAME_MAX], again[NAME_MAX];
  snprintf(again, sizeof again, "%s.again", name);
  for (int tries = 0; tries < 20; ++tries) {
    struct pollfd p = {fd, POLLIN, 0};
    while (poll(&p, 1, 300) > 0) {
      char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
      ssize_t n = read(fd, buf, sizeof buf);
      for (char* at = buf; n > 0 && at < buf + n;) {
        struct inotify_event* e = (struct inotify_event*)at;
        at += sizeof *e + e->len;
        if (e->len && (e->mask & IN_CREATE) && (!strcmp(e->name, name) || !strncmp(e->name, again, strlen(again)))) {
          if (e->wd != wd) printf("event for %s came with watch %d, expected %d\n", name, e->wd, wd);
          return 0;
        }
      }
    }
    snprintf(path, sizeof path, "%s/%s.%d", dir, again, tries);
    touch(path);
  }
  return -1;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* dir = argv[1];
  int rounds = argc > 2 ? atoi(argv[2]) : 100;
  long ms = argc > 3 ? atol(argv[3]) : 20;
  char sub[PATH_MAX], path[PATH_MAX + 80], name[64];
  snprintf(path, sizeof path, "rm -rf '%s'", dir);
  if (system(path) != 0) return 1;
  snprintf(sub, sizeof sub, "%s/sub", dir);
  if (mkdir(dir, 0755) != 0 || mkdir(sub, 0755) != 0) return perror("mkdir"), 1;
  fd = inotify_init1(IN_CLOEXEC);
  int top = inotify_add_watch(fd, dir, IN_CREATE | IN_EXCL_UNLINK);
  snprintf(path, sizeof path, "%s/gap", dir);
  touch(path);
  int gap = inotify_add_watch(fd, path, IN_MODIFY);
  inotify_rm_watch(fd, gap);
  int low = inotify_add_watch(fd, sub, IN_CREATE);
  printf("watches %d and %d (%d given back)\n", top, low, gap);
  for (int r = 0; r < rounds; ++r) {
    snprintf(name, sizeof name, "f%d", r);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    touch(path);
    if (await(top, dir, name) != 0) return printf("round %d: no event for %s\n", r, name), 1;
    snprintf(name, sizeof name, "g%d", r);
    snprintf(path, sizeof path, "%s/%s", sub, name);
    touch(path);
    if (await(low, sub, name) != 0) return printf("round %d: no event for %s\n", r, name), 1;
    printf("round %d: f%d seen by watch %d, g%d by watch %d\n", r, r, top, r, low);
    fflush(stdout);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  snprintf(path, sizeof path, "rm -rf '%s'", dir);
  return system(path) == 0 ? 0 : 1;
}
