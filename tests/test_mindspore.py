"""import-mindspore / export-mindspore on checkpoints written by MindSpore itself (tests/fixtures/mindspore,
made by make_fixtures.py with mindspore 2.10.0: model-zoo BERT names, AdamWeightDecay / Lamb state, fp32 and
fp16, the CRC trailer, the safetensors variant). MindSpore is not installed for these tests; the one test that
needs it (export -> mindspore.load_checkpoint) runs when `mindspore` imports or MINDSPORE_PYTHON names an
interpreter that has it, and skips otherwise (MindSpore is an 800 MB+ wheel kept out of every extra)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from train_entry.__main__ import main
from train_entry.mindspore_format import index, write_array, write_entry

FIXTURES = REPO / "tests" / "fixtures" / "mindspore"
FP32 = FIXTURES / "bert_tiny_fp32.ckpt"
FP16 = FIXTURES / "bert_tiny_fp16_crc.ckpt"
SAFETENSORS = FIXTURES / "bert_tiny_fp32.safetensors"
BF16 = FIXTURES / "bert_tiny_bf16.ckpt"
VOCAB = FIXTURES / "vocab.txt"
SAMPLE = REPO / "jobsub" / "demo_data" / "tnews-sample"
LAYERS = 2


def originals(kind: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "originals.npz") as data:
        return {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(kind + "/")}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train_entry", *args], capture_output=True, text=True, timeout=600, cwd=REPO
    )


def do_import(ckpt: Path, out: Path, *extra: str, capsys=None) -> dict:
    code = main(["import-mindspore", "--ckpt", str(ckpt), "--vocab", str(VOCAB), "--output", str(out), *extra])
    assert code == 0
    return json.loads((out / "mindspore_import.json").read_text())


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


# The expected correspondence, written out by hand from the two code bases (not derived from the importer)
def expected_pairs(layers: int) -> dict[str, str]:
    pairs = {
        "bert.bert.bert_embedding_lookup.embedding_table": "bert.embeddings.word_embeddings.weight",
        "bert.bert.bert_embedding_postprocessor.full_position_embedding.embedding_table": (
            "bert.embeddings.position_embeddings.weight"
        ),
        "bert.bert.bert_embedding_postprocessor.token_type_embedding.embedding_table": (
            "bert.embeddings.token_type_embeddings.weight"
        ),
        "bert.bert.bert_embedding_postprocessor.layernorm.gamma": "bert.embeddings.LayerNorm.weight",
        "bert.bert.bert_embedding_postprocessor.layernorm.beta": "bert.embeddings.LayerNorm.bias",
        "bert.bert.dense.weight": "bert.pooler.dense.weight",
        "bert.bert.dense.bias": "bert.pooler.dense.bias",
    }
    for i in range(layers):
        ms, hf = f"bert.bert.bert_encoder.layers.{i}.", f"bert.encoder.layer.{i}."
        for kind, name in (("weight", "weight"), ("bias", "bias")):
            pairs[f"{ms}attention.attention.query_layer.{kind}"] = f"{hf}attention.self.query.{name}"
            pairs[f"{ms}attention.attention.key_layer.{kind}"] = f"{hf}attention.self.key.{name}"
            pairs[f"{ms}attention.attention.value_layer.{kind}"] = f"{hf}attention.self.value.{name}"
            pairs[f"{ms}attention.output.dense.{kind}"] = f"{hf}attention.output.dense.{name}"
            pairs[f"{ms}intermediate.{kind}"] = f"{hf}intermediate.dense.{name}"
            pairs[f"{ms}output.dense.{kind}"] = f"{hf}output.dense.{name}"
        for ms_ln, hf_ln in (("gamma", "weight"), ("beta", "bias")):
            pairs[f"{ms}attention.output.layernorm.{ms_ln}"] = f"{hf}attention.output.LayerNorm.{hf_ln}"
            pairs[f"{ms}output.layernorm.{ms_ln}"] = f"{hf}output.LayerNorm.{hf_ln}"
    return pairs


HEAD_PAIRS = {
    "bert.cls1.dense.weight": "cls.predictions.transform.dense.weight",
    "bert.cls1.dense.bias": "cls.predictions.transform.dense.bias",
    "bert.cls1.layernorm.gamma": "cls.predictions.transform.LayerNorm.weight",
    "bert.cls1.layernorm.beta": "cls.predictions.transform.LayerNorm.bias",
    "bert.cls1.output_bias": "cls.predictions.bias",
    "bert.cls2.dense.weight": "cls.seq_relationship.weight",
    "bert.cls2.dense.bias": "cls.seq_relationship.bias",
}


@pytest.mark.parametrize("ckpt", [FP32, SAFETENSORS], ids=["ckpt", "safetensors"])
def test_imported_tensors_equal_the_originals_under_transformers_names(ckpt: Path, tmp_path: Path) -> None:
    report = do_import(ckpt, tmp_path / "model", "--num-heads", "2")
    weights = load_weights(tmp_path / "model")
    pairs = expected_pairs(LAYERS) | HEAD_PAIRS
    assert set(weights) == set(pairs.values())
    for ms_name, array in originals("fp32").items():
        np.testing.assert_array_equal(weights[pairs[ms_name]], array, err_msg=ms_name)
        assert weights[pairs[ms_name]].dtype == np.float32
    assert report["architecture"] == "BertForPreTraining"
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert {k: config[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size")} == {
        "vocab_size": len(VOCAB.read_text(encoding="utf-8").splitlines()),
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "intermediate_size": 32,
    }
    assert config["max_position_embeddings"] == 64 and config["num_attention_heads"] == 2


def test_fp16_weights_become_exact_float32_or_stay_fp16(tmp_path: Path) -> None:
    pairs = expected_pairs(LAYERS)
    source = originals("fp16")
    assert source["bert.bert.bert_embedding_lookup.embedding_table"].dtype == np.float16  # the fixture is fp16
    do_import(FP16, tmp_path / "f32", "--num-heads", "2")
    do_import(FP16, tmp_path / "keep", "--num-heads", "2", "--dtype", "keep")
    as_f32, kept = load_weights(tmp_path / "f32"), load_weights(tmp_path / "keep")
    for ms_name, hf_name in pairs.items():
        assert as_f32[hf_name].dtype == np.float32
        np.testing.assert_array_equal(as_f32[hf_name], source[ms_name].astype(np.float32))
        assert kept[hf_name].dtype == source[ms_name].dtype  # fp16 dense/embeddings, fp32 layer norms
        np.testing.assert_array_equal(kept[hf_name], source[ms_name])


def test_bf16_weights_become_float32_as_mindspore_reads_them(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    source = originals("bf16")  # float32 values MindSpore itself gives for its bf16 tensors
    do_import(BF16, tmp_path / "f32", "--num-heads", "2")
    do_import(BF16, tmp_path / "keep", "--num-heads", "2", "--dtype", "keep")
    as_f32 = load_weights(tmp_path / "f32")
    kept = load_file(str(tmp_path / "keep" / "model.safetensors"))
    for ms_name, hf_name in expected_pairs(LAYERS).items():
        np.testing.assert_array_equal(as_f32[hf_name], source[ms_name], err_msg=ms_name)
        assert kept[hf_name].dtype == torch.bfloat16
        np.testing.assert_array_equal(kept[hf_name].float().numpy(), source[ms_name])
    assert json.loads((tmp_path / "keep" / "config.json").read_text())["dtype"] == "bfloat16"


def test_optimizer_state_is_dropped_and_task_heads_reported(tmp_path: Path, capsys) -> None:
    report = do_import(FP16, tmp_path / "model", "--num-heads", "2")
    out = capsys.readouterr().out
    assert report["dropped"] == 83 and report["kept"] == 39  # 41 parameters x (lamb_m, lamb_v) + global_step
    assert all(n.startswith(("lamb_m.", "lamb_v.")) or n == "global_step" for n in report["dropped_names"])
    assert report["unmapped_names"] == []  # BertCLS's classifier is recognised as the fine-tuning head it is
    assert report["task_heads"] == {
        "classifier of BertCLS / BertNER (dense_1)": ["bert.dense_1.weight [15, 16]", "bert.dense_1.bias [15]"]
    }
    assert "dropped 83 optimizer/training-state tensors" in out
    assert "left out the fine-tuning head (classifier of BertCLS / BertNER (dense_1); finetune trains its own): " in out
    assert "bert.dense_1.weight [15, 16], bert.dense_1.bias [15]" in out
    assert not any(k.startswith(("lamb", "adam", "global", "cls")) for k in load_weights(tmp_path / "model"))

    report = do_import(FP32, tmp_path / "pre", "--num-heads", "2")
    assert {"global_step", "learning_rate", "loss_scale"} <= set(report["dropped_names"])
    assert sum(n.startswith("adam_m.") for n in report["dropped_names"]) == 46


def test_optimizer_bytes_are_skipped_not_read(tmp_path: Path) -> None:
    """A checkpoint whose optimizer moment claims 6 GiB (a sparse hole, so the disk holds nothing): the import
    only finishes in seconds, far below 6 GiB of memory, if it seeks past those bytes instead of reading them."""
    big = tmp_path / "huge_moments.ckpt"
    entries = index(FP32)
    with open(FP32, "rb") as src, open(big, "wb") as dst:
        for e in entries:
            write_entry(dst, e.name, e.dims, e.tensor_type, e.nbytes)
            src.seek(e.spans[0][0])
            dst.write(src.read(e.nbytes))
        hole = 6 << 30
        write_entry(dst, "moments.bert.bert.bert_embedding_lookup.embedding_table", (hole // 4,), "Float32", hole)
        dst.seek(hole - 1, os.SEEK_CUR)
        dst.write(b"\0")
    code = (
        "import resource, sys; from train_entry.__main__ import main; "
        f"rc = main(['import-mindspore', '--ckpt', {str(big)!r}, '--vocab', {str(VOCAB)!r}, "
        f"'--output', {str(tmp_path / 'model')!r}, '--num-heads', '2']); "
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    peak_kb = int(result.stdout.split("PEAK_KB")[1].split()[0])
    # about 260 MB alone (torch + transformers are imported to write the folder); one full CI run measured 655 MB
    # for reasons not found. Reading the 6 GiB moment would take over 6 GiB, so 1.5 GiB still separates the two;
    # the memory target itself (model + 200 MB) is measured by benchmarks/mindspore_import.py.
    assert peak_kb < 1536 * 1024, f"peak RSS {peak_kb} KB: the skipped moment was read"
    report = json.loads((tmp_path / "model" / "mindspore_import.json").read_text())
    assert report["dropped_bytes_not_read"] > hole


def test_transformers_model_from_the_folder_matches_one_built_from_the_original_arrays(tmp_path: Path) -> None:
    import torch
    from transformers import BertConfig, BertForPreTraining

    do_import(FP32, tmp_path / "model", "--num-heads", "2")
    loaded = BertForPreTraining.from_pretrained(str(tmp_path / "model")).eval()

    config = BertConfig.from_pretrained(str(tmp_path / "model"))
    built = BertForPreTraining(config).eval()
    source = originals("fp32")
    with torch.no_grad():
        params = dict(built.named_parameters())
        for ms_name, hf_name in (expected_pairs(LAYERS) | HEAD_PAIRS).items():
            params[hf_name].copy_(torch.from_numpy(source[ms_name]))
    # the MLM decoder is the word-embedding table in both frameworks
    assert built.cls.predictions.decoder.weight.data_ptr() == built.bert.embeddings.word_embeddings.weight.data_ptr()

    torch.manual_seed(0)
    ids = torch.randint(5, config.vocab_size, (3, 12))
    types = torch.randint(0, 2, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        a = loaded(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
        b = built(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
    torch.testing.assert_close(a.prediction_logits, b.prediction_logits, rtol=0, atol=0)
    torch.testing.assert_close(a.seq_relationship_logits, b.seq_relationship_logits, rtol=0, atol=0)
    torch.testing.assert_close(a.hidden_states[-1], b.hidden_states[-1], rtol=0, atol=0)
    assert a.prediction_logits.abs().max() > 0.1  # the weights are not a degenerate zero model


@pytest.mark.slow
def test_finetune_and_pretrain_run_from_the_imported_folder(tmp_path: Path) -> None:
    do_import(FP16, tmp_path / "model", "--num-heads", "2")
    data = tmp_path / "tnews"
    data.mkdir()
    for name, n in (("train.json", 48), ("dev.json", 16)):
        lines = (SAMPLE / name).read_text(encoding="utf-8").splitlines(keepends=True)[:n]
        (data / name).write_text("".join(lines), encoding="utf-8")
    (data / "labels.json").write_text((SAMPLE / "labels.json").read_text(encoding="utf-8"), encoding="utf-8")
    common = ["--batch-size", "16", "--max-length", "32", "--save-steps", "100", "--logging-steps", "1"]
    result = run_cli(
        "finetune", "--data", str(data), "--model", str(tmp_path / "model"), "--output", str(tmp_path / "ft"),
        "--epochs", "1", *common,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics  # the run finished and evaluated
    assert (tmp_path / "ft" / "model" / "config.json").is_file()
    # the fine-tuned classifier goes back to MindSpore as BertCLS names it
    assert main(["export-mindspore", "--model", str(tmp_path / "ft" / "model"), "--output",
                 str(tmp_path / "ft.ckpt")]) == 0  # fmt: skip
    exported = {e.name: e for e in index(tmp_path / "ft.ckpt")}
    assert exported["bert.dense_1.weight"].dims == (15, 16) and exported["bert.dense_1.bias"].dims == (15,)
    assert set(expected_pairs(LAYERS)) <= set(exported)
    result = run_cli(
        "pretrain", "--data", str(data), "--model", str(tmp_path / "model"), "--output", str(tmp_path / "pt"),
        "--epochs", "1", *common,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def _corrupt(tmp_path: Path) -> dict[str, Path]:
    raw = FP32.read_bytes()
    crc = FP16.read_bytes()
    files = {
        "truncated inside a tensor": raw[: len(raw) // 2],
        "truncated inside a header": raw[:30],
        "one byte short": raw[:-1],
        "garbage tail": raw + b"\x0a\xff\xff\xff\x0f",
        "length overwritten": raw[:1] + b"\xff\xff\xff\xff\x7f" + raw[6:],
        "random bytes": np.random.default_rng(3).bytes(4096),
        "empty": b"",
        "crc mismatch": crc[:200] + bytes([crc[200] ^ 0xFF]) + crc[201:],
        "encrypted-looking": b"\x9f" + raw[1:],
    }
    out = {}
    for label, data in files.items():
        path = tmp_path / (label.replace(" ", "_") + ".ckpt")
        path.write_bytes(data)
        out[label] = path
    return out


def test_truncated_or_corrupted_files_give_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    for label, path in _corrupt(tmp_path).items():
        code = main(["import-mindspore", "--ckpt", str(path), "--vocab", str(VOCAB), "--output", str(tmp_path / "m")])
        err = capsys.readouterr().err.strip()
        assert code == 2, label
        assert err.startswith("error: ") and "\n" not in err, f"{label}: {err}"
        assert str(path) in err, f"{label}: {err}"
        assert "Traceback" not in err
        assert not (tmp_path / "m" / "model.safetensors").exists(), label
    # and through the real command line
    result = run_cli("import-mindspore", "--ckpt", str(tmp_path / "one_byte_short.ckpt"), "--vocab", str(VOCAB),
                     "--output", str(tmp_path / "m"))  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "truncated or corrupted" in result.stderr


def test_a_checkpoint_cut_short_during_the_import_keeps_the_earlier_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    """The file shrinks after it was indexed (an upload still being replaced): one line, exit 2, and the
    folder from an earlier import is untouched. The cut is made from the CRC-check step, which runs between
    indexing and copying (a hook into the real code path; nothing is mocked)."""
    import train_entry.mindspore_convert as convert

    do_import(FP32, tmp_path / "model", "--num-heads", "2")
    before = {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()}
    changing = tmp_path / "changing.ckpt"
    changing.write_bytes(FP32.read_bytes())

    def cut_then_check(path: Path):
        with open(changing, "r+b") as f:
            f.truncate(20_000)  # inside the word-embedding table, the first tensor
        return None

    monkeypatch.setattr(convert, "verify_crc", cut_then_check)
    code = main(["import-mindspore", "--ckpt", str(changing), "--vocab", str(VOCAB), "--output",
                 str(tmp_path / "model"), "--num-heads", "2"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "cut short" in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_a_missing_required_weight_is_refused_with_the_list(tmp_path: Path, capsys) -> None:
    """Written with our own writer (MindSpore never writes a BERT without its weights)."""
    gone = {"bert.bert.bert_encoder.layers.1.attention.attention.key_layer.weight", "bert.bert.dense.bias"}
    partial = tmp_path / "partial.ckpt"
    with open(FP32, "rb") as src, open(partial, "wb") as dst:
        for e in index(FP32):
            if e.name not in gone:
                src.seek(e.spans[0][0])
                write_array(dst, e.name, np.frombuffer(src.read(e.nbytes), e.dtype).reshape(e.dims), e.tensor_type)
    code = main(["import-mindspore", "--ckpt", str(partial), "--vocab", str(VOCAB), "--output", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2
    assert "2 required BERT weights are missing" in err
    assert all(name in err for name in gone)
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_a_parameter_split_into_slices_is_joined(tmp_path: Path) -> None:
    """MindSpore splits a parameter over 512 MiB into consecutive entries with one tag; made here with our own
    writer (a real one needs a 512 MiB tensor), sliced the way MindSpore slices (np.array_split by rows)."""
    sliced = tmp_path / "sliced.ckpt"
    with open(FP32, "rb") as src, open(sliced, "wb") as dst:
        for e in index(FP32):
            src.seek(e.spans[0][0])
            array = np.frombuffer(src.read(e.nbytes), e.dtype).reshape(e.dims)
            if e.name.endswith("bert_embedding_lookup.embedding_table"):
                for part in np.array_split(array, 3):
                    write_entry(dst, e.name, e.dims, e.tensor_type, part.nbytes)
                    dst.write(part.tobytes())
            else:
                write_array(dst, e.name, array, e.tensor_type)
    do_import(sliced, tmp_path / "model", "--num-heads", "2")
    np.testing.assert_array_equal(
        load_weights(tmp_path / "model")["bert.embeddings.word_embeddings.weight"],
        originals("fp32")["bert.bert.bert_embedding_lookup.embedding_table"],
    )


def _rewrite(src: Path, dst: Path, rename) -> None:
    """Copy a checkpoint entry by entry with our own writer, renaming (None drops the entry)."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        for e in index(src):
            f.seek(e.spans[0][0])
            if (name := rename(e.name)) is not None:
                write_array(out, name, np.frombuffer(f.read(e.nbytes), e.dtype).reshape(e.dims), e.tensor_type)


@pytest.mark.parametrize("prefix", ["", "network.backbone."], ids=["BertModel-alone", "deeper-wrapper"])
def test_the_body_prefix_is_found_not_assumed(prefix: str, tmp_path: Path) -> None:
    """BertModel saved on its own (no prefix, heads absent) or wrapped one level deeper (heads beside it)."""

    def rename(name: str) -> str | None:
        if prefix == "":
            if "cls1" in name or "cls2" in name:
                return None
            return name.replace("bert.bert.", "")
        return name.replace("bert.bert.", prefix + "bert.").replace("bert.cls", prefix + "cls")

    _rewrite(FP32, tmp_path / "renamed.ckpt", rename)
    report = do_import(tmp_path / "renamed.ckpt", tmp_path / "model", "--num-heads", "2")
    assert report["architecture"] == ("BertModel" if prefix == "" else "BertForPreTraining")
    assert report["unmapped"] == 0 and report["dropped"] == 95 - (14 if prefix == "" else 0)
    weights = load_weights(tmp_path / "model")
    for ms_name, hf_name in (expected_pairs(LAYERS) | ({} if prefix == "" else HEAD_PAIRS)).items():
        np.testing.assert_array_equal(weights[hf_name], originals("fp32")[ms_name], err_msg=ms_name)


def test_a_parameter_written_twice_is_refused(tmp_path: Path, capsys) -> None:
    twice = tmp_path / "twice.ckpt"
    twice.write_bytes(FP32.read_bytes())
    with open(twice, "ab") as f:
        write_array(f, "bert.bert.dense.bias", np.zeros(16, np.float32))
    code = main(["import-mindspore", "--ckpt", str(twice), "--vocab", str(VOCAB), "--output", str(tmp_path / "m")])
    assert code == 2 and "bert.bert.dense.bias appears twice" in capsys.readouterr().err


def test_config_and_preset_are_checked_against_the_tensors(tmp_path: Path, capsys) -> None:
    assert main(["import-mindspore", "--ckpt", str(FP32), "--vocab", str(VOCAB), "--output", str(tmp_path / "a"),
                 "--preset", "tiny"]) == 2  # fmt: skip
    assert "hidden_size=128 but the checkpoint's tensors say 16" in capsys.readouterr().err
    bert_config = tmp_path / "bert_config.json"
    bert_config.write_text(json.dumps({"hidden_size": 16, "num_attention_heads": 4, "hidden_act": "gelu"}))
    do_import(FP32, tmp_path / "b", "--config", str(bert_config))
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["num_attention_heads"] == 4
    assert config["hidden_act"] == "gelu_new"  # MindSpore's nn.GELU is the tanh approximation
    assert main(["import-mindspore", "--ckpt", str(FP32), "--vocab", str(VOCAB), "--output", str(tmp_path / "c")]) == 2
    assert "--num-heads" in capsys.readouterr().err  # hidden 16: the heads cannot be guessed
    small_vocab = tmp_path / "vocab.txt"
    small_vocab.write_text(VOCAB.read_text(encoding="utf-8") + "extra1\nextra2\n", encoding="utf-8")
    code = main(["import-mindspore", "--ckpt", str(FP32), "--vocab", str(small_vocab), "--output",
                 str(tmp_path / "d"), "--num-heads", "2"])  # fmt: skip
    assert code == 2 and "embedding has 405 rows" in capsys.readouterr().err


def test_export_writes_the_model_zoo_names_back(tmp_path: Path) -> None:
    do_import(FP32, tmp_path / "model", "--num-heads", "2")
    assert main(["export-mindspore", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "out.ckpt")]) == 0
    source = originals("fp32")
    entries = index(tmp_path / "out.ckpt")
    assert {e.name for e in entries} == set(source)  # every weight, no optimizer state
    from train_entry.mindspore_format import read_array

    with open(tmp_path / "out.ckpt", "rb") as f:
        for e in entries:
            np.testing.assert_array_equal(read_array(f, e), source[e.name], err_msg=e.name)
    # and it imports again to the same folder contents
    do_import(tmp_path / "out.ckpt", tmp_path / "again", "--num-heads", "2")
    first, second = load_weights(tmp_path / "model"), load_weights(tmp_path / "again")
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("ckpt,kind,count", [(FP16, "fp16", 39), (BF16, "bf16", 39), (FP32, "fp32", 46)])
def test_export_loads_in_mindspore(ckpt: Path, kind: str, count: int, tmp_path: Path) -> None:
    """Round trip through MindSpore itself: in this interpreter when it has mindspore, else through the one
    MINDSPORE_PYTHON names (a throwaway venv with `pip install mindspore`); skipped when neither exists.
    fp16, bf16 (kept as stored) and fp32 with the pre-training heads."""
    do_import(ckpt, tmp_path / "model", "--num-heads", "2", "--dtype", "keep")
    assert main(["export-mindspore", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "out.ckpt")]) == 0
    np.savez(tmp_path / "expected.npz", **{k: v for k, v in originals(kind).items() if "dense_1" not in k})
    check = (
        "import sys, numpy as np, mindspore as ms\n"
        "got = ms.load_checkpoint(sys.argv[1]); want = np.load(sys.argv[2])\n"
        "assert set(got) == set(want.files), sorted(set(got) ^ set(want.files))\n"
        "for k in want.files:\n"
        "    t = got[k]\n"
        "    a = (t.float() if t.dtype == ms.bfloat16 else t).asnumpy()\n"
        "    assert a.dtype == want[k].dtype and np.array_equal(a, want[k]), k\n"
        "print('mindspore loaded', len(got), 'parameters')\n"
    )
    python = sys.executable
    try:
        import mindspore  # noqa: F401
    except ImportError:
        python = os.environ.get("MINDSPORE_PYTHON", "")
        if not python:
            pytest.skip("mindspore is not installed (set MINDSPORE_PYTHON to an interpreter that has it)")
    result = subprocess.run(
        [python, "-c", check, str(tmp_path / "out.ckpt"), str(tmp_path / "expected.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"mindspore loaded {count} parameters" in result.stdout


def test_the_job_template_calls_flags_train_entry_accepts() -> None:
    from jobsub.jobs.templates import load_template
    from train_entry.__main__ import build_parser

    spec = load_template("bert-import-mindspore")
    rendered = spec.render_command(
        {
            "inputs": {k: f"/in/{k}" for k in spec.inputs},
            "params": spec.params,
            "outputs": {"dir": "/out"},
            "job": {"id": "j"},
        }
    )
    argv = shlex.split(rendered)
    assert argv[:4] == ["python", "-m", "train_entry", "import-mindspore"]
    args = build_parser().parse_args(argv[3:])
    assert args.output.startswith("/out") and args.ckpt.startswith("/in/")


@pytest.mark.slow
def test_import_job_then_finetune_job_on_its_outputs(tmp_path: Path) -> None:
    """What the README tells a user: upload the ckpt with the import job, fine-tune on its outputs/model/
    (real `jobsub` subprocesses and detached runners on a local-store profile)."""
    from tests.conftest import make_env

    env = make_env(tmp_path)
    imported = env.run(
        "submit", "bert-import-mindspore", "--input", f"ckpt={FP16}", "--input", f"vocab={VOCAB}",
        "--set", "params.num_heads=2", "--follow", timeout=300,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert "dropped 83 optimizer/training-state tensors" in imported.stdout
    job_id = imported.stdout.splitlines()[0]
    outputs = env.run_json("status", job_id)["outputs"]
    data = tmp_path / "tnews"
    data.mkdir()
    for name, n in (("train.json", 32), ("dev.json", 16)):
        lines = (SAMPLE / name).read_text(encoding="utf-8").splitlines(keepends=True)[:n]
        (data / name).write_text("".join(lines), encoding="utf-8")
    (data / "labels.json").write_text((SAMPLE / "labels.json").read_text(encoding="utf-8"), encoding="utf-8")
    tuned = env.run(
        "submit", "bert-finetune", "--input", f"model={outputs}model/", "--input", f"data={data}",
        "--set", "params.epochs=1", "--set", "params.batch_size=16", "--set", "params.max_length=32", "--follow",
        timeout=600,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stdout[-3000:] + tuned.stderr[-3000:]
    assert "model: " in tuned.stdout and "job succeeded" in tuned.stdout
