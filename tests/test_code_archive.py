"""Unpacking a code archive refuses what escapes the code folder, with and without tarfile's "data" filter.

Pythons before 3.11.4 (Debian bookworm's 3.11.2, the base of minimal job images) have no filter; the same
archive must be refused or unpacked identically there, so each case runs both ways (the filter removed with
monkeypatch to stand for the older Python, which cannot run in this test process).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from jobsub.jobs.packaging import pack_code, unpack_code


@pytest.fixture(params=["filter", "no-filter"])
def python_kind(request, monkeypatch) -> str:
    if request.param == "no-filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return request.param


def _archive(*members: tuple[str, bytes | None, str | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                info.mode = 0o4755
                tar.addfile(info, io.BytesIO(data or b""))
    return buf.getvalue()


def test_a_packed_folder_unpacks_the_same(python_kind: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "main.py").write_text("print('hi')\n")
    (src / "pkg" / "a b;$(x).txt").write_text("odd\n")
    (src / "link.py").symlink_to("main.py")
    data, _, _ = pack_code(src)
    unpack_code(data, tmp_path / "out")
    assert (tmp_path / "out" / "main.py").read_text() == "print('hi')\n"
    assert (tmp_path / "out" / "pkg" / "a b;$(x).txt").read_text() == "odd\n"


@pytest.mark.parametrize(
    "member",
    [("../escape.txt", b"x", None), ("evil", None, "/etc/passwd"), ("up", None, "../../x")],
)
def test_members_escaping_the_code_folder_are_refused(python_kind: str, tmp_path: Path, member) -> None:
    with pytest.raises(tarfile.TarError):
        unpack_code(_archive(("ok.txt", b"ok", None), member), tmp_path / "out" / "code")
    assert not (tmp_path / "out" / "escape.txt").exists()


def test_an_absolute_name_lands_inside_the_code_folder(python_kind: str, tmp_path: Path) -> None:
    unpack_code(_archive(("/abs.txt", b"x", None)), tmp_path / "out")
    assert (tmp_path / "out" / "abs.txt").read_bytes() == b"x" and not Path("/abs.txt").exists()


def test_set_id_bits_are_dropped(python_kind: str, tmp_path: Path) -> None:
    unpack_code(_archive(("tool", b"#!/bin/sh\n", None)), tmp_path / "out")
    assert (tmp_path / "out" / "tool").stat().st_mode & 0o7000 == 0
