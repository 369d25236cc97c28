"""Submit never starts a job on an input that failed to upload: the job would stage a partial copy.

The failure is real, not mocked: the input file grows while it is being sent (the progress callback appends to
it), so the uploader's own source-change check fails that file, as it would for a log file still being written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Env, _isolated_env, code_folder


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return _isolated_env(tmp_path, monkeypatch, "local", None)


def test_an_input_that_fails_to_upload_submits_nothing(local_env: Env, tmp_path: Path) -> None:
    from jobsub.api import Client
    from jobsub.errors import JobError

    data = tmp_path / "data"
    data.mkdir()
    (data / "steady.txt").write_text("stays the same\n")
    growing = data / "train.jsonl"
    growing.write_bytes(b'{"sentence": "x", "label": "100"}\n' * 20000)
    grown: list[int] = []

    def append_once(progress) -> None:
        if not grown and progress.path.endswith("train.jsonl"):
            grown.append(1)
            with growing.open("ab") as out:
                out.write(b'{"sentence": "late", "label": "101"}\n')

    client = Client()
    code = code_folder(tmp_path, "print('ran', flush=True)\n")
    with pytest.raises(JobError, match=r"input data: 1 file\(s\) failed to upload .*nothing was submitted"):
        client.submit("python-script", code=code, inputs={"data": str(data)}, progress=append_once)
    assert grown, "the progress callback never saw the file: the test did not exercise a failure"
    assert client.jobs() == []  # no record, no runner: nothing to stage a partial input
