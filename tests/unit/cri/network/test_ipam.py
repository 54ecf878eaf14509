"""The persisted allocator: order, idempotence, release, persistence, exhaustion,
and never the same address to two owners, across threads and instances."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from cri.network import AddressesExhausted, NetworkError
from cri.network.ipam import Allocator

NET = IPv4Network("10.200.0.0/29")  # .1 gateway, .2-.6 pods, .7 broadcast


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"10.200.0.{last}")


@pytest.fixture
def allocator(tmp_path: Path) -> Allocator:
    return Allocator(tmp_path / "ipam", NET)


def test_first_address_follows_the_gateway(allocator: Allocator) -> None:
    assert allocator.allocate("a") == ip(2)
    assert allocator.allocate("b") == ip(3)


def test_allocation_is_idempotent_per_owner(allocator: Allocator) -> None:
    first = allocator.allocate("a")
    assert allocator.allocate("a") == first
    assert allocator.allocations() == {first: "a"}


def test_lookup(allocator: Allocator) -> None:
    assert allocator.lookup("a") is None
    assert allocator.lookup("a") is None
    got = allocator.allocate("a")
    assert allocator.lookup("a") == got


def test_one_file_per_address_holding_the_owner(allocator: Allocator) -> None:
    allocator.allocate("sandbox-1")
    assert (allocator.directory / "10.200.0.2").read_text() == "sandbox-1\n"
    assert (allocator.directory / "last_reserved").read_text() == "10.200.0.2\n"


def test_release(allocator: Allocator) -> None:
    allocator.allocate("a")
    assert allocator.release("a") == ip(2)
    assert allocator.lookup("a") is None
    assert allocator.release("a") is None  # twice: fine
    assert allocator.release("never-seen") is None
    assert not (allocator.directory / "10.200.0.2").exists()


def test_release_leaves_other_owners(allocator: Allocator) -> None:
    allocator.allocate("a")
    allocator.allocate("b")
    allocator.release("a")
    assert allocator.allocations() == {ip(3): "b"}


def test_released_address_is_not_reused_at_once(allocator: Allocator) -> None:
    """Round-robin: a crash-looping pod does not get its predecessor's address back
    while other addresses are free."""
    assert allocator.allocate("a") == ip(2)
    allocator.release("a")
    assert allocator.allocate("b") == ip(3)
    assert allocator.allocate("c") == ip(4)


def test_wraps_around_to_released_addresses(allocator: Allocator) -> None:
    owners = [f"p{i}" for i in range(5)]
    for owner in owners:
        allocator.allocate(owner)
    allocator.release("p1")  # .3
    assert allocator.allocate("late") == ip(3)


def test_exhaustion(allocator: Allocator) -> None:
    got = {allocator.allocate(f"p{i}") for i in range(5)}
    assert got == {ip(n) for n in range(2, 7)}  # never .0, .1 (gateway) or .7
    with pytest.raises(AddressesExhausted, match="no free address in 10.200.0.0/29"):
        allocator.allocate("one-too-many")
    allocator.release("p3")
    assert allocator.allocate("one-too-many") == ip(5)


def test_smallest_network_has_one_pod_address(tmp_path: Path) -> None:
    allocator = Allocator(tmp_path, IPv4Network("10.9.9.0/30"))
    assert allocator.allocate("only") == IPv4Address("10.9.9.2")
    with pytest.raises(AddressesExhausted):
        allocator.allocate("second")


def test_reserved_addresses_are_skipped(tmp_path: Path) -> None:
    allocator = Allocator(tmp_path, NET, reserved=[ip(2), ip(4)])
    assert [allocator.allocate(o) for o in "abc"] == [ip(3), ip(5), ip(6)]


def test_allocations_survive_a_new_instance(tmp_path: Path) -> None:
    first = Allocator(tmp_path, NET)
    a, b = first.allocate("a"), first.allocate("b")
    first.release("a")
    second = Allocator(tmp_path, NET)
    assert second.allocations() == {b: "b"}
    assert second.lookup("b") == b
    assert second.allocate("b") == b
    # round-robin continues where the first instance stopped, not at .2
    assert second.allocate("c") == ip(4)
    assert a == ip(2)


def test_unreadable_or_empty_reservations_count_as_used(allocator: Allocator) -> None:
    (allocator.directory / "10.200.0.2").write_text("")
    (allocator.directory / "10.200.0.3").mkdir()  # unreadable as a file
    assert allocator.allocate("a") == ip(4)
    assert allocator.allocations()[ip(2)] == ""


def test_foreign_files_are_ignored(allocator: Allocator) -> None:
    (allocator.directory / "README").write_text("x")
    (allocator.directory / "last_reserved").write_text("garbage")
    assert allocator.allocate("a") == ip(2)


def test_last_reserved_outside_the_network_restarts_at_the_beginning(
    allocator: Allocator,
) -> None:
    (allocator.directory / "last_reserved").write_text("192.0.2.9\n")
    assert allocator.allocate("a") == ip(2)


def test_stale_temporaries_of_a_crashed_writer_are_removed(allocator: Allocator) -> None:
    stale = allocator.directory / ".10.200.0.2.999.1.tmp"
    stale.write_text("crashed\n")
    assert allocator.allocate("a") == ip(2)
    assert not stale.exists()
    assert not [p for p in allocator.directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("owner", ["", "a\nb"])
def test_bad_owner(allocator: Allocator, owner: str) -> None:
    with pytest.raises(NetworkError, match="invalid owner"):
        allocator.allocate(owner)


def test_never_twice_across_threads_and_instances(tmp_path: Path) -> None:
    """Eight threads over two instances (two flock descriptions, as two processes
    would have) race for a /26: every owner gets one address, no address two owners."""
    network = IPv4Network("10.200.1.0/26")  # 61 pod addresses
    instances = [Allocator(tmp_path, network), Allocator(tmp_path, network)]
    results: dict[str, IPv4Address] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        allocator = instances[n % 2]
        start.wait()
        for i in range(7):
            owner = f"w{n}-{i}"
            try:
                got = allocator.allocate(owner)
            except BaseException as e:
                errors.append(e)
                return
            with lock:
                results[owner] = got

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 56
    assert len(set(results.values())) == 56
    on_disk = instances[0].allocations()
    assert {owner: ip for ip, owner in on_disk.items()} == results


def test_a_reservation_made_elsewhere_is_never_taken(allocator: Allocator) -> None:
    """A reservation the listing does not show (made by a process that ignored the
    lock, say): link(2) refuses the name, and the next address is taken instead."""
    (allocator.directory / "10.200.0.2").write_text("other-process\n")
    original = allocator._scan

    def scan_hiding_it() -> list[tuple[IPv4Address, str]]:
        return [(address, owner) for address, owner in original() if address != ip(2)]

    allocator._scan = scan_hiding_it  # type: ignore[method-assign]
    assert allocator.allocate("mine") == ip(3)
    assert (allocator.directory / "10.200.0.2").read_text() == "other-process\n"


def test_never_twice_across_processes(tmp_path: Path) -> None:
    """Three processes allocate concurrently into one directory (flock between them)."""
    import subprocess
    import sys

    code = (
        "import sys, ipaddress, pathlib\n"
        "from cri.network.ipam import Allocator\n"
        "a = Allocator(pathlib.Path(sys.argv[1]), ipaddress.IPv4Network('10.200.2.0/26'))\n"
        "for i in range(15):\n"
        "    print(a.allocate(f'{sys.argv[2]}-{i}'))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), f"proc{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0].split() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    handed_out = [address for output in outputs for address in output]
    assert len(handed_out) == 45
    assert len(set(handed_out)) == 45
    assert len(Allocator(tmp_path, IPv4Network("10.200.2.0/26")).allocations()) == 45


def test_reserve_says_whether_the_owner_had_its_address(allocator: Allocator) -> None:
    assert allocator.reserve("a") == (ip(2), False)
    assert allocator.reserve("a") == (ip(2), True)
    assert allocator.reserve("b") == (ip(3), False)


def test_lookup_follows_changes_made_by_another_instance(tmp_path: Path) -> None:
    ours, theirs = Allocator(tmp_path, NET), Allocator(tmp_path, NET)
    address = ours.allocate("a")
    assert ours.lookup("a") == address
    theirs.release("a")
    assert ours.lookup("a") is None
    moved = theirs.allocate("a")
    assert moved != address
    assert ours.lookup("a") == moved
