"""Inputs made by other tools and other people (issue 18, items 3 and 4): each one gives one clear line and
the right exit code, never a traceback, and nothing from it acts on the user's terminal or leaves the folder.

Uploads and jobs run on the local store and on moto/Ceph (`env`, `s3env`); a hostile job record is written
the way anyone with access to the bucket could write it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Env, _isolated_env, code_folder, poll, submit_script

ESC = "\x1b"


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """A user on the local store: for what does not depend on the store (specs, numbers, printing)."""
    return _isolated_env(tmp_path, monkeypatch, "local", None)


def _no_traceback(result) -> None:
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, result.stderr


def _wait_final(env: Env, job_id: str) -> dict:
    def final() -> dict | None:
        status = env.run_json("status", job_id)["status"]
        return status if status["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "LOST") else None

    return poll(final, 120, 0.3, f"job {job_id} to end")


# -- folder uploads and symlinks -------------------------------------------------------------------------------
def _folder_with_links(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "train.txt").write_text("train")
    (folder / "sub" / "blob.bin").write_bytes(b"blob")
    (folder / "passwd").symlink_to("/etc/passwd")  # a link out of the folder: its target must not be sent
    (folder / "alias.bin").symlink_to("sub/blob.bin")  # a link inside: sent under its own name
    (folder / "etc").symlink_to("/etc")  # a folder link: never entered
    (folder / "dangling").symlink_to("no-such-file")
    os.mkfifo(folder / "pipe")  # would block a reader forever
    return folder


def test_a_folder_upload_sends_no_link_out_of_the_folder_and_names_what_it_skips(env: Env, tmp_path: Path) -> None:
    folder = _folder_with_links(tmp_path)
    result = env.run("upload", str(folder), env.uri("up/"), timeout=60)
    assert result.returncode == 0, result.stderr
    keys = sorted(o.key for o in env.store().iter_objects(env.bucket, "up/"))
    assert keys == ["up/alias.bin", "up/sub/blob.bin", "up/train.txt"]
    assert env.store().get(env.bucket, "up/alias.bin") == b"blob"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: not uploaded:")]
    assert len(warnings) == 4, result.stderr
    text = "\n".join(warnings)
    assert f"{folder / 'passwd'}: a symlink to /etc/passwd, outside the folder, not followed" in text
    assert f"{folder / 'etc'}: a symlink to a folder (/etc), not followed" in text
    assert f"{folder / 'dangling'}: a broken symlink" in text
    assert f"{folder / 'pipe'}: not a regular file" in text
    summary = json.loads(env.run("upload", str(folder), env.uri("up/"), "--json", "-q", check=True).stdout)
    assert len(summary["skipped"]) == 4 and summary["files_skipped"] == 3  # unchanged, and still said


def test_a_local_input_folder_of_a_job_sends_no_link_out_of_it(tmp_path: Path, local_env: Env) -> None:
    folder = _folder_with_links(tmp_path)
    code = code_folder(
        tmp_path,
        "import os, pathlib\n"
        "root = pathlib.Path(os.environ['JOBSUB_INPUT_DATA'])\n"
        "print('SEEN', sorted(p.relative_to(root).as_posix() for p in root.rglob('*') if p.is_file()), flush=True)\n",
    )
    result = local_env.run("submit", "python-script", "--code", str(code), "--input", f"data={folder}", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "not uploaded:" in result.stderr and "a symlink to /etc/passwd" in result.stderr
    job_id = result.stdout.strip().splitlines()[0]
    assert _wait_final(local_env, job_id)["state"] == "SUCCEEDED"
    assert "SEEN ['alias.bin', 'sub/blob.bin', 'train.txt']" in local_env.run("logs", job_id).stdout


def test_a_link_out_of_a_jobs_outputs_is_not_uploaded_and_the_log_says_so(local_env: Env, tmp_path: Path) -> None:
    body = (
        "import os\n"
        "out = os.environ['JOBSUB_OUTPUT_DIR']\n"
        "open(os.path.join(out, 'real.txt'), 'w').write('mine')\n"
        "os.symlink('/etc/passwd', os.path.join(out, 'passwd'))\n"
    )
    job_id = submit_script(local_env, code_folder(tmp_path, body))
    assert _wait_final(local_env, job_id)["state"] == "SUCCEEDED"
    outputs = local_env.run_json("results", job_id)["files"]
    assert [f["uri"].rsplit("/", 1)[-1] for f in outputs] == ["real.txt"], outputs
    assert (
        "output not uploaded: passwd: a symlink to /etc/passwd, outside the folder"
        in local_env.run("logs", job_id).stdout
    )


# -- job specs ---------------------------------------------------------------------------------------------------
def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_a_spec_nested_too_deep_is_one_line_with_file_and_line(local_env: Env, tmp_path: Path) -> None:
    deep = "name: deep\ncommand: echo hi\nparams:\n  x: " + "[" * 5000 + "]" * 5000 + "\n"
    path = _spec(tmp_path, deep)
    result = local_env.run("submit", "-f", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {path}:4: nested more than 32 levels deep; a job spec is a flat mapping "
        "(name, command, params, inputs, env, resources)"
    )


def test_a_spec_larger_than_a_mebibyte_is_refused_without_reading_it_all(local_env: Env, tmp_path: Path) -> None:
    path = _spec(tmp_path, "name: big\ncommand: echo hi\ndescription: |\n" + ("  " + "x" * 1000 + "\n") * 1100)
    result = local_env.run("submit", "-f", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:") and "larger than 1024 KiB" in result.stderr
    _no_traceback(result)


@pytest.mark.parametrize(
    "env_block, message",
    [
        ('  "A=B": x\n', "env name 'A=B' contains '='"),
        ('  "A\\0B": x\n', "env name 'A\\x00B' contains a NUL character"),
        ('  GOOD: "a\\0b"\n', "env.GOOD contains a NUL character"),
    ],
)
def test_env_entries_a_process_cannot_hold_are_refused_at_submit(
    local_env: Env, tmp_path: Path, env_block: str, message: str
) -> None:
    path = _spec(tmp_path, "name: e\ncommand: echo hi\nenv:\n" + env_block)
    result = local_env.run("submit", "-f", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {path}:4: env") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_output_bucket_is_refused_before_anything_is_uploaded(s3env: Env, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("x")
    code = code_folder(tmp_path, "print('hi')\n")
    result = s3env.run(
        "submit",
        "python-script",
        "--code",
        str(code),
        "--input",
        f"data={data}",
        "--output",
        "s3://no-such-bucket-x/out/",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: outputs s3://no-such-bucket-x/out/: bucket 'no-such-bucket-x' does not")
    assert list(s3env.store().iter_objects(s3env.bucket, "")) == []  # no input, no code, no record


# -- numbers -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["cost", "--since", "99999999999d"], "duration '99999999999d' is too long"),
        (["uploads", "abort", "--all", "--older-than", "99999999999d"], "duration '99999999999d' is too long"),
        (["upload", "README.md", "s3://bucket1/x", "--part-size", "9" * 400 + "T"], "is too large"),
    ],
)
def test_numbers_beyond_reason_are_usage_errors(local_env: Env, args: list[str], message: str) -> None:
    result = local_env.run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    _no_traceback(result)


# -- untrusted text on the terminal ----------------------------------------------------------------------------
HOSTILE = f"[/bold]x[link=https:evil]{ESC}[2J{ESC}]0;pwned\x07"


def test_keys_with_markup_and_escapes_print_as_text(local_env: Env, tmp_path: Path) -> None:
    key = f"t/{HOSTILE}.txt"
    if local_env.kind == "s3":
        pytest.skip("XML 1.0 cannot carry ESC in a listing; the local store holds any byte but NUL")
    store = local_env.store()
    store.put(local_env.bucket, key, b"x")
    listing = local_env.run("ls", "-r", local_env.uri("t/"))  # "[/bold]" holds a "/": a folder below t/
    assert listing.returncode == 0, listing.stderr
    assert ESC not in listing.stdout and "\x07" not in listing.stdout
    assert "[/bold]x[link=https:evil]\\x1b[2J\\x1b]0;pwned\\x07.txt" in listing.stdout
    dry = local_env.run("rm", "-r", local_env.uri("t/"), "--dry-run")
    assert ESC not in dry.stdout and "[/bold]" in dry.stdout


def test_json_output_escapes_c1_controls_and_keeps_the_key(local_env: Env) -> None:
    """U+009B is a one-character CSI that a terminal acts on; JSON allows it raw, `--json` escapes it."""
    key = "t/title\u009b2J\u0085新闻.txt"
    local_env.store().put(local_env.bucket, key, b"x")
    listing = local_env.run("ls", "-r", local_env.uri("t/"), "--json")
    assert listing.returncode == 0, listing.stderr
    assert "\u009b" not in listing.stdout and "\u0085" not in listing.stdout
    assert "\\u009b2J\\u0085新闻" in listing.stdout  # escaped controls, readable Chinese
    assert key in json.dumps(json.loads(listing.stdout), ensure_ascii=False)


def test_upload_ids_and_keys_with_markup_print_as_text_in_the_uploads_table(s3env: Env) -> None:
    client = s3env.boto()
    client.create_multipart_upload(Bucket=s3env.bucket, Key="u/[/bold][red]x.bin")
    result = s3env.run("uploads", "list", s3env.uri("u/"))
    assert result.returncode == 0, result.stderr
    assert "u/[/bold][red]x.bin" in result.stdout


def test_a_hostile_job_record_and_log_print_as_text(local_env: Env, tmp_path: Path) -> None:
    from jobsub.jobs.records import JobRecord, JobStatus, State
    from jobsub.uri import ObjectURI

    body = (
        "import json, os, sys\n"
        f"print({HOSTILE!r}, flush=True)\n"
        "out = os.environ['JOBSUB_OUTPUT_DIR']\n"
        f"metrics = {{{HOSTILE!r}: 0.5, 'per_class': {{{HOSTILE!r}: {{'precision': '[/i]', 'f1': 1.0}}}}}}\n"
        "json.dump(metrics, open(os.path.join(out, 'metrics.json'), 'w'))\n"
    )
    job_id = submit_script(local_env, code_folder(tmp_path, body))
    assert _wait_final(local_env, job_id)["state"] == "SUCCEEDED"
    record = JobRecord(local_env.store(), ObjectURI.parse(local_env.uri("jobs/")), job_id)
    status = record.read_status()
    record.write_status(JobStatus(**{**status.model_dump(), "state": State.FAILED, "reason": HOSTILE}))
    for args in (["status", job_id], ["jobs"], ["logs", job_id], ["logs", "-f", job_id], ["results", job_id]):
        result = local_env.run(*args)
        assert result.returncode in (0, 1), (args, result.stderr)
        _no_traceback(result)
        assert ESC not in result.stdout + result.stderr and "\x07" not in result.stdout + result.stderr, args
        if args != ["jobs"]:  # the table has no reason column: it must only not break
            assert "[/bold]x[link=https:evil]\\x1b[2J" in result.stdout + result.stderr, (args, result.stdout)


def test_plain_and_markup_show_control_characters_and_brackets_as_written() -> None:
    import io

    from rich.console import Console

    from jobsub.cli.safe import log_line, markup, plain

    assert plain(f"a{ESC}[2Jb\tc\nd\x9b\u2028") == "a\\x1b[2Jb\tc\\x0ad\\x9b\\u2028"
    assert log_line("50%\r100%\x1b]52;c;Zm9v\x07") == "50%\r100%\\x1b]52;c;Zm9v\\x07"
    out = io.StringIO()
    Console(file=out, width=200, highlight=False).print(markup(HOSTILE))
    assert out.getvalue() == "[/bold]x[link=https:evil]\\x1b[2J\\x1b]0;pwned\\x07\n"


def test_durations_and_sizes_beyond_reason_are_refused_in_one_place() -> None:
    from jobsub.errors import UsageError
    from jobsub.units import parse_duration, parse_size

    assert parse_duration("36600d") == 36600 * 86400
    assert parse_size("1024T") == 1 << 50
    for bad in ("36601d", "99999999999d", "9" * 400):
        with pytest.raises(UsageError, match="too long"):
            parse_duration(bad)
    for bad in ("2000000T", "9" * 400):
        with pytest.raises(UsageError, match="too large"):
            parse_size(bad)
