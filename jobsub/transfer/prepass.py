"""The first file's hash pass, begun before the S3 client exists (issue 22, fifth pass).

`jobsub upload` spends ~0.2 s building its S3 client (botocore's imports and tables) before the first
request, and only then read the file: the one pass that makes the whole-file SHA-256 (the object's metadata)
and the part checks, in series with everything else. Client.upload starts that same pass here first, on a
thread, while the client is built (hashlib and pread release the GIL), with the part check the upload is
expected to use (the profile's, or for `auto` what this process or a remembered probe record found, else
MD5).

It stays ONE read for both: the upload takes the pass's result only whole, and only if the file's identity
(size, mtime, ctime, inode, device) is the one the pass started from, the part ranges are the plan's and
the part check is the one the upload settled on (the probe's answer, never the guess); anything else and the
upload reads the file again itself. A pass that fails for any reason leaves nothing behind: the upload's own
pass meets the error and reports it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobsub.config import Profile
    from jobsub.storage.checksums import Checksum


class EarlyPass:
    """One file's hash pass on a thread; ``take`` hands its result over once, if it is still the file's."""

    def __init__(self, path: Path, algorithm: str, part_size: int | None, threshold: int) -> None:
        self.path = path
        self.algorithm = algorithm
        self._part_size = part_size
        self._threshold = threshold
        self._stop = threading.Event()
        self._done = threading.Event()
        self._result: tuple[os.stat_result, list[tuple[int, int, int]], str, dict[int, Checksum]] | None = None
        self._thread = threading.Thread(target=self._run, name="early-pass", daemon=True)

    @classmethod
    def begin(cls, path: Path, algorithm: str, part_size: int | None, threshold: int) -> EarlyPass:
        early = cls(path, algorithm, part_size, threshold)
        early._thread.start()
        return early

    def _run(self) -> None:
        from jobsub.transfer.checksums import lookup_sha256, sha256_and_parts, stable_stat
        from jobsub.transfer.planning import part_ranges, plan_part_size

        try:
            stat = stable_stat(self.path)
            if stat.st_size <= self._threshold or lookup_sha256(self.path, stat) is not None:
                return  # one PUT, or a remembered SHA-256: the upload makes no pass
            ranges = part_ranges(stat.st_size, plan_part_size(stat.st_size, self._part_size))
            sha, parts = sha256_and_parts(
                self.path, stat, self.algorithm, ranges, stop=self._stop.is_set, remember=False
            )
            self._result = (stat, ranges, sha, parts)
        except BaseException:  # the upload's own pass meets the error and reports it
            self._result = None
        finally:
            self._done.set()

    def cancel(self) -> None:
        """Stop reading (the upload failed before it needed the pass); its result is never used."""
        self._stop.set()

    def take(
        self, path: Path, stat: os.stat_result, algorithm: str, ranges: list[tuple[int, int, int]]
    ) -> tuple[str, dict[int, Checksum]] | None:
        """The pass's SHA-256 and part checks, once, when they describe this very file as the upload plans it:
        the same path and identity (the pass's stat was taken before its read), the same part ranges and the
        same part check; else None (and the upload reads the file itself)."""
        from jobsub.transfer.checksums import identity, remember_if_unchanged

        if path != self.path:
            return None
        if algorithm != self.algorithm:  # the upload expects another part check: this pass is of no use
            self.cancel()
            return None
        self._done.wait()
        result, self._result = self._result, None
        if result is None or self._stop.is_set():
            return None
        early_stat, early_ranges, sha, parts = result
        if identity(early_stat) != identity(stat) or early_ranges != ranges:
            return None
        remember_if_unchanged(path, stat, sha)  # as the upload's own pass does (not before: see _run)
        return sha, parts


def expected_part_check(profile: Profile) -> str:
    """The part check an upload with this profile is expected to settle on, without a request: the profile's
    algorithm, and for `auto` on a non-AWS endpoint the answer this process or a remembered probe record has
    (transfer/probes.py), else MD5. A guess for the early pass only: the upload settles it by asking."""
    from jobsub.config import strip_userinfo
    from jobsub.storage.checksums import SIGNED_OR_MD5, SIGNED_SHA256, profile_algorithm
    from jobsub.transfer import probes

    algorithm = profile_algorithm(profile)
    if algorithm != SIGNED_OR_MD5:
        return algorithm
    endpoint = profile.effective_endpoint()
    described = strip_userinfo(endpoint) if endpoint else "AWS S3"  # as S3Store.description
    return SIGNED_SHA256 if probes.asked_in_this_process(described, probes.load_answer) else "md5"
