/* Blocked in read on a pipe: echoes each line it reads with its number and a running sum. */
#include <stdio.h>
#include <string.h>

int main(void) {
  char line[256];
  unsigned long sum = 0;
  int n = 0;
  while (fgets(line, sizeof line, stdin)) {
    for (char* p = line; *p; ++p) sum = sum * 131 + (unsigned char)*p;
    printf("%d %lu %s", ++n, sum, line);
    fflush(stdout);
  }
  printf("eof after %d lines\n", n);
  return 0;
}
