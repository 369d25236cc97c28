"""The in-order SHA-256 of a file written out of order (downloads' end-to-end check, computed as parts land)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

from jobsub.transfer.inorder import InOrderHasher
from jobsub.transfer.planning import part_ranges


def test_parts_written_in_any_order_from_many_threads_hash_like_the_whole_file(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(5 * (1 << 20) + 123)
    ranges = part_ranges(len(data), 1 << 20)
    path = tmp_path / "f"
    path.write_bytes(b"\0" * len(data))
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data[: 1 << 20], 0)
        hasher = InOrderHasher(fd, ranges, done={1})  # part 1 already there from an earlier run
        order = [r for r in ranges if r[0] != 1]
        random.Random(2).shuffle(order)

        def write(number: int, offset: int, length: int) -> None:
            os.pwrite(fd, data[offset : offset + length], offset)
            hasher.completed(number)

        threads = [threading.Thread(target=write, args=r) for r in order]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
        hasher.stop()
    finally:
        os.close(fd)


def test_a_part_that_never_came_gives_no_digest_and_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3000)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = InOrderHasher(fd, part_ranges(3000, 1000))
        hasher.completed(1)
        hasher.completed(3)
        assert hasher.hexdigest() is None
        hasher.stop()
    finally:
        os.close(fd)
