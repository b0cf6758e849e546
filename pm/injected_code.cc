// The code Ferry copies into a traced process to run system calls in it (pm/tracee.h,
// "Code page"). Position-independent x86-64; assembled into this binary's read-only data and
// never run here.
//
// Each entry point ends by the thread stopping itself: SIGSTOP sent to itself alone (tgkill,
// with its own pid and tid as it sees them, from getpid and gettid). Unlike a breakpoint or a
// single-step trap, whose SIGTRAP the kernel forces through and which then resets the
// process's SIGTRAP handler to the default when SIGTRAP is blocked, a sent SIGSTOP changes
// nothing in the process: its tracer sees it as a signal-delivery stop and drops it.
#include "pm/injected_code.h"

// clang-format off
asm(R"(
  .pushsection .rodata.ferry_injected_code, "a"
  .intel_syntax noprefix
  .globl ferry_injected_code_begin
  .globl ferry_injected_batch
  .globl ferry_injected_single
  .globl ferry_injected_stopped
  .globl ferry_injected_code_end
ferry_injected_code_begin:

# rbx: a table of rbp calls, 64 bytes each: number, six arguments, then a word that is 0 (stop
# at a failure) or not (the call may fail) and becomes the call's result. On a failure rbx
# still points at the failed call and rbp counts it among those left.
ferry_injected_batch:
1:
  test rbp, rbp
  jz 3f
  mov rax, [rbx]
  mov rdi, [rbx + 8]
  mov rsi, [rbx + 16]
  mov rdx, [rbx + 24]
  mov r10, [rbx + 32]
  mov r8, [rbx + 40]
  mov r9, [rbx + 48]
  syscall
  cmp qword ptr [rbx + 56], 0
  mov [rbx + 56], rax
  jne 2f
  cmp rax, -4095
  jae 3f
2:
  add rbx, 64
  dec rbp
  jmp 1b

# rax: the call's number, rdi rsi rdx r10 r8 r9: its arguments. Its result goes to r12.
ferry_injected_single:
  syscall
  mov r12, rax

3:
  mov eax, 39
  syscall
  mov r13, rax
  mov eax, 186
  syscall
  mov rsi, rax
  mov rdi, r13
  mov edx, 19
  mov eax, 234
  syscall
ferry_injected_stopped:
  jmp 3b

ferry_injected_code_end:
  .att_syntax prefix
  .popsection
)");
// clang-format on

extern "C" const unsigned char ferry_injected_code_begin[], ferry_injected_batch[], ferry_injected_single[],
    ferry_injected_stopped[], ferry_injected_code_end[];

namespace ferry::pm {

std::span<const std::byte> injected_code() {
  return {reinterpret_cast<const std::byte*>(ferry_injected_code_begin),
          size_t(ferry_injected_code_end - ferry_injected_code_begin)};
}

InjectedEntry injected_entry() {
  return {uint64_t(ferry_injected_batch - ferry_injected_code_begin), uint64_t(ferry_injected_single - ferry_injected_code_begin),
          uint64_t(ferry_injected_stopped - ferry_injected_code_begin)};
}

}  // namespace ferry::pm
