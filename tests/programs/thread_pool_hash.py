# Usage: thread_pool_hash.py MIB ROUNDS. A ThreadPoolExecutor of 8 threads hashes the eight
# slices of a MIB MiB bytearray each round (hashlib lets go of the GIL: they run at once), the
# main thread prints a digest of their digests and changes one byte. The output depends only on
# the arguments.
import hashlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor

mib, rounds, threads = int(sys.argv[1]), int(sys.argv[2]), 8
n = mib << 20
block = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(32768))  # 1 MiB
buf = bytearray(n)
for off in range(0, n, len(block)):
    buf[off:off + len(block)] = block
view = memoryview(buf)
chunk = n // threads


def digest(i):
    return hashlib.sha256(view[i * chunk:(i + 1) * chunk]).hexdigest()


with ThreadPoolExecutor(threads) as pool:
    for r in range(rounds):
        digests = list(pool.map(digest, range(threads)))
        print(r, hashlib.sha256("".join(digests).encode()).hexdigest()[:16], flush=True)
        buf[(r * 7919 * 4096 + r) % n] ^= 0xFF
        time.sleep(0.05)
print("done", flush=True)
