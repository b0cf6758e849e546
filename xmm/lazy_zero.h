// LazyZeroAllocator: for per-page tables (a state byte or a bit per page of a job) that must be
// all zero when made and are mostly written later, page after page, as the memory moves.
//
// Contract:
// - allocate() returns zeroed memory; from 1 MiB up it is a fresh anonymous mapping, so the
//   kernel supplies its pages zeroed when first written, not when allocated.
// - Value-initialising an element (`LazyZeroVector<T>(n)`, `resize(n)`) writes nothing: the
//   memory is zero already, so T's value-initialised state must be all zero bytes (an enum
//   whose first value is 0, an integer). Constructing with a value (`assign(n, v)`, copies)
//   writes as usual. So make such a vector at its size and do not grow it back after a
//   shrink (the capacity it kept holds the old bytes).
//
// Why: on this VM a first touch of memory costs ~12 us a page (the hypervisor backs it then),
// so `std::vector<uint8_t>(2 MiB)` took 6 ms. The importer's table for an 8 GiB job is 2 MiB
// and the exporter's bitmaps 768 KiB; both are made while the job is frozen, and they made
// 8 GiB downtime ~8 ms longer than 4 GiB's.
#pragma once

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace ferry::xmm {

template <typename T>
struct LazyZeroAllocator {
  static_assert(std::is_trivially_copyable_v<T>, "the memory is handed out as zero bytes");
  using value_type = T;
  static constexpr size_t kMapFrom = 1u << 20;

  LazyZeroAllocator() = default;
  template <typename U>
  LazyZeroAllocator(const LazyZeroAllocator<U>&) {}

  T* allocate(size_t n) {
    size_t bytes = n * sizeof(T);
    if (bytes >= kMapFrom) {
      void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      return static_cast<T*>(p);
    }
    void* p = std::calloc(n ? n : 1, sizeof(T));
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    if (n * sizeof(T) >= kMapFrom)
      ::munmap(p, n * sizeof(T));
    else
      std::free(p);
  }
  // Value-initialisation leaves the zero bytes as they are.
  template <typename U>
  void construct(U*) {}
  template <typename U, typename A, typename... Rest>
  void construct(U* p, A&& a, Rest&&... rest) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a), std::forward<Rest>(rest)...);
  }

  template <typename U>
  bool operator==(const LazyZeroAllocator<U>&) const {
    return true;
  }
};

template <typename T>
using LazyZeroVector = std::vector<T, LazyZeroAllocator<T>>;

}  // namespace ferry::xmm
