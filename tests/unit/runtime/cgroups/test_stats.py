"""Stats parsing from fixture files that copy real v1 and v2 contents."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import stats

from .trees import UNLIMITED, write


def test_cpu_v1(tmp_path: Path) -> None:
    write(
        tmp_path / "cpu",
        {"cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 5000\nnr_bursts 0\n"},
    )
    write(
        tmp_path / "cpuacct",
        {"cpuacct.usage": "900\n", "cpuacct.usage_user": "600\n", "cpuacct.usage_sys": "300\n"},
    )
    assert stats.cpu_v1(str(tmp_path / "cpu"), str(tmp_path / "cpuacct")) == stats.CpuStats(
        usage_total_ns=900,
        usage_user_ns=600,
        usage_system_ns=300,
        throttling_periods=10,
        throttled_periods=3,
        throttled_time_ns=5000,
    )


def test_cpu_v1_ticks_fallback(tmp_path: Path) -> None:
    write(tmp_path, {"cpuacct.usage": "900", "cpuacct.stat": "user 2\nsystem 1\n"})
    cpu = stats.cpu_v1(None, str(tmp_path))
    assert (cpu.usage_user_ns, cpu.usage_system_ns) == (20_000_000, 10_000_000)
    assert cpu.throttling_periods == 0


def test_memory_v1(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "memory.usage_in_bytes": "10000\n",
            "memory.max_usage_in_bytes": "20000\n",
            "memory.limit_in_bytes": "1048576\n",
            "memory.failcnt": "4\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            "memory.stat": (
                "cache 1\nrss 2\ninactive_file 3\npgfault 9\n"
                "total_cache 4000\ntotal_rss 5000\ntotal_inactive_file 3000\n"
                "total_pgfault 70\ntotal_pgmajfault 7\n"
            ),
        },
    )
    assert stats.memory_v1(str(tmp_path)) == stats.MemoryStats(
        usage_bytes=10000,
        max_usage_bytes=20000,
        limit_bytes=1048576,
        working_set_bytes=7000,
        rss_bytes=5000,
        cache_bytes=4000,
        pgfault=70,
        pgmajfault=7,
        oom_kill_count=2,
        failcnt=4,
    )


def test_memory_v1_unlimited_and_working_set_floor(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "memory.usage_in_bytes": "100",
            "memory.limit_in_bytes": UNLIMITED,
            "memory.stat": "total_inactive_file 500\n",
        },
    )
    memory = stats.memory_v1(str(tmp_path))
    assert memory.limit_bytes is None
    assert memory.working_set_bytes == 0


def test_hugetlb_v1(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hugetlb.2MB.limit_in_bytes": UNLIMITED,
            "hugetlb.2MB.rsvd.limit_in_bytes": UNLIMITED,
            "hugetlb.2MB.usage_in_bytes": "2097152",
            "hugetlb.2MB.max_usage_in_bytes": "4194304",
            "hugetlb.2MB.failcnt": "1",
            "hugetlb.1GB.limit_in_bytes": UNLIMITED,
        },
    )
    assert stats.hugetlb_v1(str(tmp_path)) == {
        "1GB": stats.HugetlbStats(),
        "2MB": stats.HugetlbStats(usage_bytes=2097152, max_usage_bytes=4194304, failcnt=1),
    }


def test_blkio_v1(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "blkio.throttle.io_service_bytes_recursive": (
                "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\n"
                "8:16 Read 1\n8:16 Write 2\nTotal 12291\n"
            )
        },
    )
    assert stats.blkio_v1(str(tmp_path)) == stats.BlkioStats(read_bytes=4097, write_bytes=8194)


def test_blkio_v1_falls_back_to_bfq(tmp_path: Path) -> None:
    write(tmp_path, {"blkio.bfq.io_service_bytes_recursive": "8:0 Read 5\n8:0 Write 6\n"})
    assert stats.blkio_v1(str(tmp_path)) == stats.BlkioStats(read_bytes=5, write_bytes=6)


def test_pids(tmp_path: Path) -> None:
    write(tmp_path, {"pids.current": "3\n", "pids.max": "max\n"})
    assert stats.pids(str(tmp_path)) == stats.PidsStats(current=3, limit=None)
    write(tmp_path, {"pids.max": "10\n"})
    assert stats.pids(str(tmp_path)) == stats.PidsStats(current=3, limit=10)


def test_cpu_v2(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "cpu.stat": (
                "usage_usec 900\nuser_usec 600\nsystem_usec 300\nnr_periods 10\n"
                "nr_throttled 3\nthrottled_usec 5\nnr_bursts 0\nburst_usec 0\n"
            )
        },
    )
    assert stats.cpu_v2(str(tmp_path)) == stats.CpuStats(
        usage_total_ns=900_000,
        usage_user_ns=600_000,
        usage_system_ns=300_000,
        throttling_periods=10,
        throttled_periods=3,
        throttled_time_ns=5_000,
    )


def test_memory_v2(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "memory.current": "10000\n",
            "memory.peak": "20000\n",
            "memory.max": "max\n",
            "memory.stat": "anon 5000\nfile 4000\ninactive_file 3000\npgfault 70\npgmajfault 7\n",
            "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\noom_group_kill 0\n",
        },
    )
    assert stats.memory_v2(str(tmp_path)) == stats.MemoryStats(
        usage_bytes=10000,
        max_usage_bytes=20000,
        limit_bytes=None,
        working_set_bytes=7000,
        rss_bytes=5000,
        cache_bytes=4000,
        pgfault=70,
        pgmajfault=7,
        oom_kill_count=2,
        failcnt=4,
    )


def test_hugetlb_v2(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hugetlb.2MB.max": "max\n",
            "hugetlb.2MB.rsvd.max": "max\n",
            "hugetlb.2MB.current": "2097152\n",
            "hugetlb.2MB.events": "max 3\n",
            "hugetlb.2MB.events.local": "max 3\n",
        },
    )
    assert stats.hugetlb_v2(str(tmp_path)) == {
        "2MB": stats.HugetlbStats(usage_bytes=2097152, failcnt=3)
    }


def test_io_v2(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "io.stat": (
                "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                "8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=x dios=0\n"
            )
        },
    )
    assert stats.io_v2(str(tmp_path)) == stats.BlkioStats(read_bytes=4097, write_bytes=8194)


def test_missing_files_give_zeros(tmp_path: Path) -> None:
    d = str(tmp_path / "missing")
    assert stats.cpu_v1(d, d) == stats.CpuStats()
    assert stats.cpu_v2(d) == stats.CpuStats()
    assert stats.memory_v1(d) == stats.MemoryStats()
    assert stats.memory_v2(None) == stats.MemoryStats()
    assert stats.pids(None) == stats.PidsStats()
    assert stats.hugetlb_v1(d) == {}
    assert stats.hugetlb_v2(None) == {}
    assert stats.blkio_v1(d) == stats.BlkioStats()
    assert stats.blkio_v1(None) == stats.BlkioStats()
    assert stats.io_v2(d) == stats.BlkioStats()
    assert stats.CgroupStats().hugetlb == {}
