"""train_entry on real TNEWS lines (the sample shipped for the demo) with tiny models built here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("torch")
pytest.importorskip("transformers")

SAMPLE = REPO / "jobsub" / "demo_data" / "tnews-sample"
pytestmark = pytest.mark.slow


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    import os

    result = subprocess.run(
        [sys.executable, "-m", "train_entry", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"train_entry {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def _head(src: Path, dest: Path, n: int) -> Path:
    dest.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[:n]), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """300 training lines, 120 dev, 150 test, plus 5 test sentences planted in train to be deduplicated."""
    folder = tmp_path_factory.mktemp("tnews")
    test_lines = (SAMPLE / "test.json").read_text(encoding="utf-8").splitlines(keepends=True)[:150]
    train_lines = (SAMPLE / "train.json").read_text(encoding="utf-8").splitlines(keepends=True)[:300]
    (folder / "train.json").write_text("".join(train_lines + test_lines[:5]), encoding="utf-8")
    (folder / "test.json").write_text("".join(test_lines), encoding="utf-8")
    _head(SAMPLE / "dev.json", folder / "dev.json", 120)
    (folder / "labels.json").write_text((SAMPLE / "labels.json").read_text(encoding="utf-8"), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def init_model(data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("init") / "model"
    run(
        "init",
        "--vocab-from",
        str(SAMPLE / "train.json"),
        str(SAMPLE / "dev.json"),
        "--preset",
        "tiny",
        "--output",
        str(out),
        "--max-positions",
        "64",
    )
    assert (out / "config.json").is_file() and (out / "vocab.txt").is_file()
    return out


@pytest.fixture(scope="module")
def finetuned(data: Path, init_model: Path, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("ft")
    metrics_file = out.parent / "metrics-lines.jsonl"
    run(
        "finetune",
        "--data",
        str(data),
        "--model",
        str(init_model),
        "--output",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "2e-3",
        "--max-length",
        "32",
        "--logging-steps",
        "5",
        "--save-steps",
        "8",
        env={"JOBSUB_METRICS_FILE": str(metrics_file)},
    )
    return out, metrics_file


def test_finetune_writes_every_artifact(finetuned: tuple[Path, Path]) -> None:
    out, metrics_file = finetuned
    for name in (
        "metrics.json",
        "confusion_matrix.png",
        "confusion_matrix.json",
        "training_curves.png",
        "predictions.jsonl",
        "model/config.json",
        "model/vocab.txt",
        "model/jobsub_labels.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0
    assert metrics["train_examples"] == 300 and metrics["train_dropped_duplicates"] == 5
    assert metrics["test_examples"] == 150 and metrics["eval_examples"] == 150
    assert len(metrics["per_class"]) == 15 and sum(c["support"] for c in metrics["per_class"].values()) == 150
    assert sum(map(sum, metrics["confusion_matrix"])) == 150
    assert metrics["train_samples_per_second"] > 0 and metrics["train_seconds"] > 0
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    lines = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert any("loss" in row and "lr" in row and "step" in row for row in lines)
    assert any("eval_accuracy" in row for row in lines)
    assert lines[-1]["final"] is True and lines[-1]["accuracy"] == metrics["accuracy"]
    predictions = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 150 and {"pred", "label", "sentence"} <= set(json.loads(predictions[0]))


def test_evaluate_reproduces_the_reported_accuracy(finetuned: tuple[Path, Path], data: Path, tmp_path: Path) -> None:
    out, _ = finetuned
    reported = json.loads((out / "metrics.json").read_text())
    run(
        "evaluate",
        "--model",
        str(out / "model"),
        "--data",
        str(data),
        "--split",
        "test",
        "--max-length",
        "32",
        "--output",
        str(tmp_path),
    )
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(reported["accuracy"], abs=1e-9)
    assert evaluated["confusion_matrix"] == reported["confusion_matrix"]
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_resume_continues_from_the_latest_checkpoint(data: Path, init_model: Path, tmp_path: Path) -> None:
    common = [
        "finetune",
        "--data",
        str(data),
        "--model",
        str(init_model),
        "--output",
        str(tmp_path),
        "--batch-size",
        "32",
        "--max-length",
        "32",
        "--save-steps",
        "5",
        "--logging-steps",
        "5",
    ]
    run(*common, "--epochs", "1")
    first = json.loads((tmp_path / "checkpoints" / "trainer_state.json").read_text())["global_step"]
    assert first == 10  # 300 lines / 32 per batch
    result = run(*common, "--epochs", "2", "--resume")
    assert "resume: from" in result.stdout and "checkpoint-10" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-10")
    rows = [json.loads(line[8:]) for line in result.stdout.splitlines() if line.startswith("metrics {")]
    steps = [row["step"] for row in rows if "step" in row]
    assert steps and min(steps) > 10  # nothing before the checkpoint was trained again


def test_predict_writes_the_clue_submission_format(finetuned: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = finetuned
    unlabelled = tmp_path / "test.json"
    rows = [json.loads(line) for line in (SAMPLE / "test.json").read_text(encoding="utf-8").splitlines()[:40]]
    unlabelled.write_text(
        "".join(
            json.dumps({"id": i, "sentence": r["sentence"], "keywords": r["keywords"]}, ensure_ascii=False) + "\n"
            for i, r in enumerate(rows)
        ),
        encoding="utf-8",
    )
    run("predict", "--model", str(out / "model"), "--file", str(unlabelled), "--output", str(tmp_path / "pred"))
    submission = [json.loads(line) for line in (tmp_path / "pred" / "tnews_predict.json").read_text().splitlines()]
    labels = {json.loads(line)["label"] for line in (SAMPLE / "labels.json").read_text().splitlines()}
    assert [row["id"] for row in submission] == list(range(40))
    assert all(set(row) == {"id", "label", "label_desc"} and row["label"] in labels for row in submission)


def test_malformed_lines_and_unknown_labels_name_file_and_line(init_model: Path, data: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "labels.json").write_text((data / "labels.json").read_text())
    lines = (data / "train.json").read_text(encoding="utf-8").splitlines(keepends=True)[:20]
    (broken / "train.json").write_text("".join(lines[:6]) + '{"label": "101", "sentence": \n' + "".join(lines[6:]))
    result = run(
        "finetune", "--data", str(broken), "--model", str(init_model), "--output", str(tmp_path / "o"), check=False
    )
    assert result.returncode == 2
    assert f"{broken / 'train.json'}:7: not a JSON line" in result.stderr and "Traceback" not in result.stderr

    (broken / "train.json").write_text("".join(lines[:3]) + '{"label": "999", "sentence": "标题"}\n')
    result = run(
        "finetune", "--data", str(broken), "--model", str(init_model), "--output", str(tmp_path / "o"), check=False
    )
    assert result.returncode == 2 and f"{broken / 'train.json'}:4: unknown label '999'" in result.stderr


def test_csv_with_chosen_fields(init_model: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (SAMPLE / "train.json").read_text(encoding="utf-8").splitlines()[:80]]
    csv_file = tmp_path / "train.csv"
    csv_file.write_text(
        "title,category\n" + "".join(f"{r['sentence'].replace(',', ' ')},{r['label_desc']}\n" for r in rows),
        encoding="utf-8",
    )
    run(
        "finetune",
        "--train",
        str(csv_file),
        "--text-field",
        "title",
        "--label-field",
        "category",
        "--model",
        str(init_model),
        "--output",
        str(tmp_path / "o"),
        "--epochs",
        "1",
        "--max-length",
        "32",
    )
    labels = json.loads((tmp_path / "o" / "model" / "jobsub_labels.json").read_text())
    assert set(labels["ids"]) == {r["label_desc"] for r in rows}


def test_pretrain_output_loads_into_finetune(data: Path, init_model: Path, tmp_path: Path) -> None:
    unlabelled = tmp_path / "pre"
    unlabelled.mkdir()
    rows = (SAMPLE / "train.json").read_text(encoding="utf-8").splitlines()[300:500]
    (unlabelled / "unlabeled.json").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run(
        "pretrain",
        "--data",
        str(unlabelled),
        "--text-file",
        str(data / "train.json"),
        "--exclude",
        str(data / "test.json"),
        "--model",
        str(init_model),
        "--output",
        str(tmp_path / "pt"),
        "--epochs",
        "1",
        "--max-length",
        "32",
        "--batch-size",
        "32",
    )
    metrics = json.loads((tmp_path / "pt" / "metrics.json").read_text())
    assert metrics["dropped_evaluation_sentences"] == 5  # the planted test sentences never reach pre-training
    assert metrics["perplexity"] > 1 and "pretrain data:" in result.stdout
    run(
        "finetune",
        "--data",
        str(data),
        "--model",
        str(tmp_path / "pt" / "model"),
        "--output",
        str(tmp_path / "ft"),
        "--epochs",
        "1",
        "--max-length",
        "32",
    )
    assert json.loads((tmp_path / "ft" / "metrics.json").read_text())["train_examples"] == 300


def test_bf16_on_a_gpu() -> None:
    """Needs a CUDA GPU (CI has none): the device settings pick bf16 + TF32 there."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    from train_entry.common import device_settings

    settings = device_settings()
    assert settings["tf32"] is True and settings["bf16"] == torch.cuda.is_bf16_supported()


def test_a_vocabulary_with_repeated_lines_keeps_its_token_ids(tmp_path: Path) -> None:
    """bert-base-chinese's vocab.txt repeats 53 entries: the model must be sized by the largest id, and saved
    model folders must keep the original vocab.txt (a rewrite would shift every later id)."""
    vocab = tmp_path / "vocab.txt"
    chars = sorted(
        {
            c
            for line in (SAMPLE / "train.json").read_text(encoding="utf-8").splitlines()[:50]
            for c in json.loads(line)["sentence"]
        }
    )
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "##0", "##0", *chars]) + "\n")
    run("init", "--vocab", str(vocab), "--preset", "tiny", "--output", str(tmp_path / "m"))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["vocab_size"] == len(chars) + 7
    assert (tmp_path / "m" / "vocab.txt").read_text() == vocab.read_text()
