"""Placeholders stay inert wherever bash reads text a second time (issue 17): heredoc bodies, `[[ -eq ]]`,
`(( ))`, `$(( ))`, `let`, `declare -i`, array subscripts, `${...}` and eval; image names are one word.

Each hostile case is a real spec file loaded as `submit -f` loads it, and (for what the check lets through)
the rendered command run by bash itself: the marker file the value would create must never appear."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Env, make_env

CONTEXTS = {
    "heredoc": "cat <<EOF\nvalue: ${{params.v}}\nEOF",
    "heredoc-quoted-delimiter": "cat <<-'EOF' >/dev/null\n\t${{params.v}}\n\tEOF",
    "double-bracket-eq": "[[ ${{params.v}} -eq 1 ]] && echo one",
    "arith-command": "(( ${{params.v}} > 1 )) && echo big",
    "arith-expansion": "echo $(( ${{params.v}} + 1 ))",
    "let": "let n=${{params.v}}+1; echo $n",
    "declare-i": "declare -i n=${{params.v}}; echo $n",
    "subscript": "a=(x y); a[${{params.v}}]=z; echo ${a[@]}",
    "param-expansion-offset": "s=abcdef; echo ${s:${{params.v}}}",
    "eval": "eval echo ${{params.v}}",
    "let-of-command-output": "let n=$(echo ${{params.v}})+1; echo $n",
    "eval-of-command-output": 'eval "$(echo ${{params.v}})"',
}


def _spec(tmp_path: Path, command: str, value: object) -> Path:
    path = tmp_path / "job.yaml"
    indented = "\n".join("  " + line for line in command.splitlines())
    path.write_text(f"name: inj\nparams:\n  v: {json.dumps(value)}\ncommand: |\n{indented}\n")
    return path


def _bash(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@pytest.mark.parametrize("payload", ["$(touch {m})", "a[$(touch {m})]"])
def test_a_hostile_value_in_a_rereading_context_is_refused_and_runs_nothing(
    tmp_path: Path, context: str, payload: str
) -> None:
    from jobsub.errors import SpecError
    from jobsub.jobs.spec import load_spec

    marker = tmp_path / "pwned"
    path = _spec(tmp_path, CONTEXTS[context], payload.format(m=marker))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: command: ${{{{params.v}}}} is ") and "\n" not in message, message
    assert "$JOBSUB_PARAM_V" in message  # the fix
    assert not marker.exists()


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ("double-bracket-eq", ""),
        ("arith-command", "big"),
        ("arith-expansion", "8"),
        ("let", "8"),
        ("declare-i", "7"),
        ("param-expansion-offset", ""),
    ],
)
def test_a_number_in_arithmetic_renders_and_runs(tmp_path: Path, context: str, expected: str) -> None:
    from jobsub.jobs.spec import load_spec

    spec = load_spec(_spec(tmp_path, CONTEXTS[context], 7))
    command = spec.render_command({"params": spec.params, "inputs": {}, "outputs": {"dir": "/o"}, "job": {"id": "j"}})
    result = _bash(command, tmp_path)
    assert result.stdout.strip() == expected, (command, result.stdout, result.stderr)


def test_text_comparisons_and_plain_words_stay_allowed(tmp_path: Path) -> None:
    """The happy side: `[[ == ]]`, `[ -eq ]` (test builtin: no arithmetic evaluation), here-strings, comments
    with apostrophes and $(...) all take one quoted word, whatever it holds."""
    from jobsub.jobs.spec import load_spec

    marker = tmp_path / "pwned"
    value = f"a[$(touch {marker})] `touch {marker}`"
    command = (
        "# don't re-read anything\n"
        '[[ ${{params.v}} == a* ]] && echo "match"\n'
        "[ ${{params.v}} -eq 1 ] 2>/dev/null || echo not-a-number\n"
        "cat <<< ${{params.v}}\n"
        "echo $(echo ${{params.v}})\n"
    )
    spec = load_spec(_spec(tmp_path, command, value))
    rendered = spec.render_command({"params": spec.params, "inputs": {}, "outputs": {"dir": "/o"}, "job": {"id": "j"}})
    result = _bash(rendered, tmp_path)
    assert result.stdout.splitlines() == ["match", "not-a-number", value, value], result.stderr
    assert not marker.exists()


def test_inputs_and_paths_are_never_arithmetic(tmp_path: Path) -> None:
    from jobsub.errors import SpecError
    from jobsub.jobs.spec import load_spec

    path = tmp_path / "job.yaml"
    path.write_text("name: inj\ninputs:\n  data: null\ncommand: echo $(( ${{inputs.data}} ))\n")
    with pytest.raises(SpecError, match=r"is in \$\(\( \)\), where bash evaluates the value as an arithmetic"):
        load_spec(path)


def test_the_runtime_checks_again_on_the_values_it_renders(tmp_path: Path) -> None:
    """A job record rewritten in a shared bucket after submit (params.v now text) is refused at render."""
    from jobsub.errors import SpecError
    from jobsub.jobs.spec import load_spec

    marker = tmp_path / "pwned"
    spec = load_spec(_spec(tmp_path, CONTEXTS["arith-command"], 3))
    hostile = {"params": {"v": f"a[$(touch {marker})]"}, "inputs": {}, "outputs": {"dir": "/o"}, "job": {"id": "j"}}
    with pytest.raises(SpecError, match="only a number may stand there"):
        spec.render_command(hostile)
    assert not marker.exists()


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    for key in ("JOBSUB_PROFILE", "JOBSUB_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    return make_env(tmp_path)


def test_set_cannot_turn_a_number_into_an_expression(user: Env, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = _spec(tmp_path, CONTEXTS["arith-command"], "3")  # a string param holding a number loads
    ok = user.run("submit", "-f", str(spec), "--dry-run")
    assert ok.returncode == 0, ok.stderr
    bad = user.run("submit", "-f", str(spec), "--set", f"params.v=a[$(touch {marker})]", "--dry-run")
    assert bad.returncode == 2 and "only a number may stand there" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not marker.exists()


@pytest.mark.parametrize("image", ["x; touch /tmp/pwned", "--privileged", "a b", "$(id)", "img\n:1", ""])
def test_bad_image_names_are_refused_at_submit(user: Env, tmp_path: Path, image: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(f"name: img\ncommand: 'true'\nimage: {json.dumps(image)}\n")
    result = user.run("submit", "-f", str(path), "--dry-run")
    assert result.returncode == 2 and "is not an image reference" in result.stderr, result.stderr
    assert f"{path}:3: image:" in result.stderr


@pytest.mark.parametrize(
    "image",
    [
        "python:3.11-slim",
        "registry.example.com:5000/me/jobsub-train:cuda",
        "docker://org/train:1",
        "ghcr.io/org/img@sha256:" + "a" * 64,
        "/img/train.sif",
        "nvcr.io#nvidia/pytorch:23.10-py3",
    ],
)
def test_real_image_names_pass(user: Env, tmp_path: Path, image: str) -> None:
    result = user.run("submit", "-f", str(_spec(tmp_path, "true", 1)), "--set", f"image={image}", "--dry-run")
    assert result.returncode == 0, result.stderr
