"""The on-disk spool: batches the server could not take yet, re-sent oldest first — by this
process when the server is back, or by a later process that uses the same spool directory."""

from __future__ import annotations

import fcntl
import itertools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_counter = itertools.count()
SUFFIX = ".batch.gz"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dead = self.dir / "rejected"

    def put(self, body: bytes) -> Path:
        """Store one gzip-encoded batch durably (write, fsync, atomic rename)."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):08d}{SUFFIX}"
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        final = self.dir / name
        os.replace(tmp, final)
        return final

    def pending(self) -> list[Path]:
        return sorted(self.dir.glob(f"*{SUFFIX}"))

    def __len__(self) -> int:
        return len(self.pending())

    @contextmanager
    def replaying(self) -> Iterator[bool]:
        """Only one process replays a spool at a time; yields False if another one is."""
        with open(self.dir / ".lock", "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def reject(self, path: Path) -> None:
        """Keep a batch the server refused as invalid, for a human to look at; never re-sent."""
        self.dead.mkdir(exist_ok=True)
        os.replace(path, self.dead / path.name)
