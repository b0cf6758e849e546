/* The library that shared_memory loads and then replaces on disk. */
#include <stdint.h>

uint64_t version_mix(uint64_t x) { return (x + 0x1234567) * 0x9e3779b97f4a7c15ull; }
