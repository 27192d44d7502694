"""`edgetrgl train` with every disk-cache shard fsync'ed when the cache is sealed (benchmark only).

On a board the page cache is small: with 2 GB of RAM the kernel's dirty limits (10% / 20% of free
memory by default) are a few hundred MB, so a writer that outruns the SD card is soon made to wait
for it. On the 24 GiB host the same limits are gigabytes and the activation cache's writes sit in
RAM while training goes on, then are written back in the background or never (the file is deleted
first). To charge the run for its writes without changing the machine's sysctls (shared with other
users), this runs the CLI in-process with ``ActivationCache.finish`` patched to fsync each shard
before the manifest: the run waits until its cache has reached the disk. That is an upper bound on
the write cost (no overlap of writeback with training after the write pass); reads still come from
the page cache when the memory cgroup leaves room for it.

    PYTHONPATH=. python benchmarks/devices/sync_cache.py -- --cache disk --cache-dir /tmp/sd/cache --out /tmp/run
"""

from __future__ import annotations

import os
import sys


def patch_finish() -> None:
    """Make ``ActivationCache.finish`` fsync every shard of a disk cache before sealing it."""
    from edgetrgl.cache.activation_cache import ActivationCache

    original = ActivationCache.finish

    def finish(self) -> None:
        if self.backend == "disk" and self.complete:
            for view in range(self.num_views):
                for shard in range(self.num_shards):
                    fd = os.open(self._shard_path(view, shard), os.O_RDONLY)
                    try:
                        os.fsync(fd)  # the shared mapping's dirty pages are the file's: this writes them out
                    finally:
                        os.close(fd)
        original(self)

    ActivationCache.finish = finish


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = argv[1:] if argv[:1] == ["--"] else argv
    patch_finish()
    from edgetrgl.cli.main import main as cli_main

    return cli_main(["train", "--quiet", "--overwrite", *argv])


if __name__ == "__main__":
    sys.exit(main())
