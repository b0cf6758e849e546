#include "pm/spawn.h"

#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstring>

namespace ferry::pm {
namespace {

constexpr size_t kChildStack = 64 * 1024;

// clone3 has no libc wrapper that runs a function in the child: the child comes back from the
// system call on the new stack, where no C frame exists to return into. So it calls `child`
// from here, and exits with its result.
long clone3_calling(clone_args* args, int (*child)(void*), void* arg) {
  long ret;
  register int (*fn)(void*) asm("r12") = child;
  register void* fn_arg asm("r13") = arg;
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xor %%ebp, %%ebp\n\t"
      "mov %%r13, %%rdi\n\t"
      "call *%%r12\n\t"
      "mov %%eax, %%edi\n\t"
      "mov $60, %%eax\n\t" /* exit */
      "syscall\n\t"
      "ud2\n"
      "1:"
      : "=a"(ret)
      : "0"(long(SYS_clone3)), "D"(args), "S"(sizeof(clone_args)), "r"(fn), "r"(fn_arg)
      : "rcx", "r11", "memory");
  return ret;
}

}  // namespace

pid_t spawn(const SpawnOptions& options, int (*child)(void*), void* arg) {
  void* stack = ::mmap(nullptr, kChildStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return -errno;
  clone_args args;
  std::memset(&args, 0, sizeof args);
  args.flags = options.flags;
  args.exit_signal = SIGCHLD;
  args.stack = reinterpret_cast<uint64_t>(stack);
  args.stack_size = kChildStack;  // the stack's top is 16-byte aligned, as the call needs
  pid_t tid = options.pid;
  if (tid > 0) {
    args.set_tid = reinterpret_cast<uint64_t>(&tid);
    args.set_tid_size = 1;
  }
  long rc = clone3_calling(&args, child, arg);
  // Sharing our memory (CLONE_VFORK), the child has exec'd or exited by now; otherwise it has
  // a copy of the stack. Either way ours can go.
  ::munmap(stack, kChildStack);
  return pid_t(rc);  // -errno on failure
}

}  // namespace ferry::pm
