// Parsing what /proc says about a process: fixed texts for the parsers, and this test
// process itself for the readers.
#include "pm/proc_info.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

namespace ferry::pm {
namespace {

TEST(ParseMaps, ReadsEveryFieldOfEveryKindOfLine) {
  auto r = parse_maps(
      "55d0c0a00000-55d0c0a02000 r--p 00000000 fe:00 5309057                    /usr/bin/cat\n"
      "55d0c1b3e000-55d0c1b5f000 rw-p 00000000 00:00 0                          [heap]\n"
      "7f1c2e000000-7f1c2e021000 rw-s 00001000 00:01 1234                       /dev/zero (deleted)\n"
      "7f1c2e200000-7f1c2e201000 ---p 00000000 00:00 0 \n"
      "7ffd1c8f0000-7ffd1c911000 rw-p 00000000 00:00 0                          [stack]\n"
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n");
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto& v = r.value();
  ASSERT_EQ(v.size(), 6u);
  EXPECT_EQ(v[0].start, 0x55d0c0a00000u);
  EXPECT_EQ(v[0].size(), 0x2000u);
  EXPECT_TRUE(v[0].read);
  EXPECT_FALSE(v[0].write);
  EXPECT_EQ(v[0].prot(), PROT_READ);
  EXPECT_EQ(v[0].dev_major, 0xfeu);
  EXPECT_EQ(v[0].inode, 5309057u);
  EXPECT_EQ(v[0].path, "/usr/bin/cat");
  EXPECT_TRUE(v[0].is_file());
  EXPECT_EQ(v[1].path, "[heap]");
  EXPECT_FALSE(v[1].is_special());
  EXPECT_TRUE(v[2].shared);
  EXPECT_EQ(v[2].offset, 0x1000u);
  EXPECT_EQ(v[2].path, "/dev/zero (deleted)");
  EXPECT_EQ(v[3].path, "");
  EXPECT_EQ(v[3].prot(), PROT_NONE);
  EXPECT_TRUE(v[5].is_special());
  EXPECT_EQ(v[5].end, 0xffffffffff601000u);
}

TEST(ParseMaps, RejectsMalformedLines) {
  EXPECT_FALSE(parse_maps("garbage\n").ok());
  EXPECT_FALSE(parse_maps("1000-2000 rw 0 00:00 0\n").ok());
  EXPECT_FALSE(parse_maps("1000-zz00 rw-p 0 00:00 0\n").ok());
}

TEST(ParseStat, FindsTheMmFieldsAfterACommandWithSpacesAndParentheses) {
  std::string stat = "123 (a b) c)) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 5000 1000 200 "
                     "18446744073709551615 4096 8192 140000 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 "
                     "12288 16384 20480 30000 30100 30200 30300 0\n";
  auto m = parse_stat_mm(stat);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m.value().start_code, 4096u);
  EXPECT_EQ(m.value().end_code, 8192u);
  EXPECT_EQ(m.value().start_stack, 140000u);
  EXPECT_EQ(m.value().start_data, 12288u);
  EXPECT_EQ(m.value().end_data, 16384u);
  EXPECT_EQ(m.value().start_brk, 20480u);
  EXPECT_EQ(m.value().arg_start, 30000u);
  EXPECT_EQ(m.value().env_end, 30300u);
  EXPECT_FALSE(parse_stat_mm("1 (x) S 1 2 3\n").ok());
}

TEST(ParseStatus, ReadsThreadsCredentialsAndSignals) {
  auto s = parse_status("Name:\tcat\nUmask:\t0027\nState:\tS (sleeping)\nTracerPid:\t0\n"
                        "Uid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\nGroups:\t4 24 27 \n"
                        "Threads:\t3\nSigPnd:\t0000000000000100\nShdPnd:\t0000000000000200\n"
                        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000004002\n");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s.value().threads, 3);
  EXPECT_EQ(s.value().umask, 027u);
  EXPECT_EQ(s.value().uid[1], 1001u);
  EXPECT_EQ(s.value().gid[3], 103u);
  EXPECT_EQ(s.value().groups, (std::vector<uint32_t>{4, 24, 27}));
  EXPECT_EQ(s.value().sig_pending_thread, 0x100u);
  EXPECT_EQ(s.value().sig_pending_shared, 0x200u);
  EXPECT_EQ(s.value().sig_caught, 0x4002u);
  EXPECT_EQ(s.value().state, "S (sleeping)");
}

TEST(ReadProc, SeesThisProcesssOwnMappingsAndFiles) {
  void* p = mmap(nullptr, 3 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  auto maps = read_maps(getpid());
  ASSERT_TRUE(maps.ok());
  bool found = false;
  for (const auto& v : maps.value())
    found = found || (v.start == uint64_t(uintptr_t(p)) && v.size() == 3 * 4096 && v.prot() == PROT_READ);
  EXPECT_TRUE(found);
  munmap(p, 3 * 4096);

  char path[] = "/tmp/ferry-proc-info-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "hello", 5), 5);
  auto fds = read_fds(getpid());
  ASSERT_TRUE(fds.ok());
  bool seen = false;
  for (const auto& f : fds.value())
    if (f.fd == fd) {
      seen = true;
      EXPECT_EQ(f.target, path);
      EXPECT_EQ(f.position, 5u);
      EXPECT_EQ(f.flags & O_ACCMODE, unsigned(O_RDWR));
      EXPECT_TRUE(S_ISREG(f.mode));
    }
  EXPECT_TRUE(seen);
  close(fd);
  unlink(path);
}

}  // namespace
}  // namespace ferry::pm
