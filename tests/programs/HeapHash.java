// A JVM job of the kind people migrate: 8 worker threads over a heap filled with long arrays
// (MIB of them), ROUNDS rounds that each rewrite and checksum every array. Prints one line per
// round; the output depends only on the arguments, however the threads are scheduled.
//   java -Xmx2g -cp DIR HeapHash MIB ROUNDS
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

public class HeapHash {
  static final int THREADS = 8;
  static final int CHUNK_LONGS = 8 << 20;  // 64 MiB per array

  static long mix(long x) {
    x ^= x >>> 33;
    x *= 0xff51afd7ed558ccdL;
    x ^= x >>> 33;
    return x;
  }

  public static void main(String[] args) throws Exception {
    long mib = Long.parseLong(args[0]);
    int rounds = Integer.parseInt(args[1]);
    int chunks = (int) (mib * 1024 * 1024 / 8 / CHUNK_LONGS);
    long[][] heap = new long[chunks][];
    for (int c = 0; c < chunks; c++) {
      heap[c] = new long[CHUNK_LONGS];
      for (int i = 0; i < CHUNK_LONGS; i++) heap[c][i] = mix((long) c * CHUNK_LONGS + i);
    }
    System.out.println("filled " + chunks + " arrays of 64 MiB");
    ExecutorService pool = Executors.newFixedThreadPool(THREADS);
    for (int r = 0; r < rounds; r++) {
      final long round = r;
      @SuppressWarnings("unchecked")
      Future<Long>[] parts = new Future[THREADS];
      for (int t = 0; t < THREADS; t++) {
        final int first = t;
        parts[t] = pool.submit(() -> {
          long sum = 0;
          for (int c = first; c < chunks; c += THREADS) {
            long[] a = heap[c];
            for (int i = 0; i < a.length; i++) {
              a[i] = mix(a[i] + round);
              sum += a[i] * (i | 1);
            }
          }
          return sum;
        });
      }
      long sum = 0;
      for (Future<Long> f : parts) sum = sum * 31 + f.get();
      System.out.println("round " + r + ": " + Long.toHexString(sum));
    }
    pool.shutdown();
  }
}
