/* The memory pattern shared by pattern_source and pattern_faulter: a region at a fixed address
 * whose pages hold a value derived from their address, except "holes" that are never touched
 * (zero pages). */
#include <stdint.h>

#define PATTERN_BASE 0x600000000000ull
#define PATTERN_PAGE 4096ull

static inline int pattern_hole(uint64_t page) { return (page / 64) % 8 == 7; }
static inline uint64_t pattern_word(uint64_t address) { return (address * 0x9e3779b97f4a7c15ull) ^ 0x5deece66dull; }
