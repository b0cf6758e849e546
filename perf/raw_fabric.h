// The raw libfabric reference the pager is judged against: the pager's exchange with nothing
// else. A page server on n1's address (127.0.0.2) answers each request (the client's address,
// then the reply size as a u32) with that many bytes copied from a buffer, the way the exporter
// copies pages out of a shell; a client on n2's address (127.0.0.3) asks, one at a time (rtt)
// or four 1 MiB replies in flight (bulk: as many bytes in flight as the prefetcher). Both run as
// fresh helper processes (no libfabric state inherited), on the provider the cluster uses.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace ferry::bench {

inline constexpr const char* kRawProvider = "tcp;ofi_rxm";
inline constexpr const char* kServerHost = "127.0.0.2";  // n1: the exporting side
inline constexpr const char* kClientHost = "127.0.0.3";  // n2: the importing side
inline constexpr uint32_t kBulkMessage =
    1 << 20;                             // 4 of them in flight: the prefetcher keeps 8 x 512 KiB
inline constexpr int kBulkInFlight = 4;  // and how many it keeps in flight

// Round trips of `size`-byte replies, one at a time: {p50, p90, p99, mean, max, n,
// percentiles: [p0 .. p100] (101 values, us)}, or {error}.
nlohmann::json raw_request_reply(int rounds, uint32_t size);
// The same requests kept `in_flight` at once (as that many threads faulting at once keep one
// each): each one's latency, from its request to its reply; the same fields.
nlohmann::json raw_request_reply_in_flight(int rounds, uint32_t size, int in_flight);
// `bytes` in 1 MiB replies, 4 in flight, after a 32 MiB warm-up: {bytes, ms, mib_s}, or {error}.
nlohmann::json raw_bulk(uint64_t bytes);
// The best of `runs` such transfers (fresh processes each: what the link can do when nothing
// else holds the CPUs), with every run's MiB/s in "runs_mib_s".
nlohmann::json raw_bulk_best(uint64_t bytes, int runs);

}  // namespace ferry::bench
