/* The restore stub: the smallest process a restored one is rebuilt from. Static, no libc (so
 * no rseq registration or TLS of its own), linked far from where programs live
 * (0x3f0000000000). The restorer starts it with PTRACE_TRACEME, so it stops at exec before
 * running a single instruction, and then rebuilds it by injecting system calls. If it ever
 * runs on its own, it only pauses. */
__attribute__((naked, noreturn)) void _start(void) {
  __asm__ volatile(
      "1: mov $34, %eax\n" /* pause */
      "   syscall\n"
      "   jmp 1b\n");
}
