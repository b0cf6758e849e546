// The code that runs system calls inside a traced process in batches (pm/injected_code.cc),
// for Tracee's code page (pm/tracee.h). Copy injected_code() to the start of an executable
// mapping of the process; the offsets below are from there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ferry::pm {

struct InjectedEntry {
  uint64_t batch;    // runs a table of calls (rbx: table, rbp: count)
  uint64_t single;   // runs one call (rax and the argument registers), result in r12
  uint64_t stopped;  // where a thread that ran either stands once it has stopped itself
};

inline constexpr size_t kInjectedCallBytes = 64;  // a table entry: number, 6 arguments, flag/result

std::span<const std::byte> injected_code();
InjectedEntry injected_entry();

}  // namespace ferry::pm
