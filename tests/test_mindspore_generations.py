"""The model zoo's two BERT naming generations (train_entry/mindspore_names.py): import picks the generation by
what the file holds and names it in its report; export writes either (`--names 1.x|2.x`).

The 1.x checkpoint (tests/fixtures/mindspore/bert_tiny_ms1x.ckpt) is written by train_entry's own writer
(make_ms1x_fixture.py) because MindSpore 1.0/1.1 wheels exist only for Python 3.7; its names are listed below by
hand from the zoo's source (mindspore-ai/mindspore, tags v1.0.0 and v1.1.1, model_zoo/official/nlp/bert/src/
bert_model.py and bert_for_pre_training.py), not derived from the importer, and the test checks the fixture
against that list before importing it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_mindspore import FIXTURES, FP32, HEAD_PAIRS, LAYERS, VOCAB, expected_pairs, load_weights, originals
from train_entry.__main__ import main
from train_entry.mindspore_format import index, read_array, write_array

MS1X = FIXTURES / "bert_tiny_ms1x.ckpt"
OLD_TOKEN_TYPE = "bert.bert.bert_embedding_postprocessor.embedding_table"  # bert_model.py v1.1.1 line 169
OLD_POSITIONS = "bert.bert.bert_embedding_postprocessor.full_position_embeddings"  # bert_model.py v1.1.1 line 186
NEW_TOKEN_TYPE = "bert.bert.bert_embedding_postprocessor.token_type_embedding.embedding_table"
NEW_POSITIONS = "bert.bert.bert_embedding_postprocessor.full_position_embedding.embedding_table"
TO_1X = {NEW_TOKEN_TYPE: OLD_TOKEN_TYPE, NEW_POSITIONS: OLD_POSITIONS}


def zoo_1x_names(layers: int) -> list[str]:
    """Every weight BertNetworkWithLoss has in the 2020 zoo, written out from its source (v1.0.0 / v1.1.1)."""
    body = "bert.bert."
    names = [
        body + "bert_embedding_lookup.embedding_table",  # EmbeddingLookup.embedding_table (Parameter)
        body + "bert_embedding_postprocessor.embedding_table",  # EmbeddingPostprocessor.embedding_table (Parameter)
        body + "bert_embedding_postprocessor.layernorm.gamma",
        body + "bert_embedding_postprocessor.layernorm.beta",
        body + "bert_embedding_postprocessor.full_position_embeddings",  # ...full_position_embeddings (Parameter)
    ]
    for i in range(layers):
        cell = f"{body}bert_encoder.layers.{i}."
        for part in ("query_layer", "key_layer", "value_layer"):
            names += [f"{cell}attention.attention.{part}.weight", f"{cell}attention.attention.{part}.bias"]
        names += [f"{cell}attention.output.dense.weight", f"{cell}attention.output.dense.bias"]
        names += [f"{cell}attention.output.layernorm.gamma", f"{cell}attention.output.layernorm.beta"]
        names += [f"{cell}intermediate.weight", f"{cell}intermediate.bias"]
        names += [f"{cell}output.dense.weight", f"{cell}output.dense.bias"]
        names += [f"{cell}output.layernorm.gamma", f"{cell}output.layernorm.beta"]
    names += [body + "dense.weight", body + "dense.bias"]  # the pooler
    names += ["bert.cls1.dense.weight", "bert.cls1.dense.bias", "bert.cls1.layernorm.gamma", "bert.cls1.layernorm.beta"]
    names += ["bert.cls1.output_bias", "bert.cls2.dense.weight", "bert.cls2.dense.bias"]
    return names


def pairs_1x() -> dict[str, str]:
    """1.x name -> transformers name: today's pairs with the two embedding tables under their 2020 names."""
    return {TO_1X.get(ms, ms): hf for ms, hf in (expected_pairs(LAYERS) | HEAD_PAIRS).items()}


def originals_1x() -> dict[str, np.ndarray]:
    return {TO_1X.get(k, k): v for k, v in originals("fp32").items()}


def run_import(ckpt: Path, out: Path, capsys) -> tuple[int, dict, str, str]:
    code = main(
        ["import-mindspore", "--ckpt", str(ckpt), "--vocab", str(VOCAB), "--output", str(out), "--num-heads", "2"]
    )
    captured = capsys.readouterr()
    report = json.loads((out / "mindspore_import.json").read_text()) if code == 0 else {}
    return code, report, captured.out, captured.err


def test_the_1x_fixture_holds_the_2020_zoo_names(tmp_path: Path) -> None:
    weights = [e.name for e in index(MS1X) if not e.name.startswith(("adam_m.", "adam_v."))]
    state = {"global_step", "learning_rate", "loss_scale"}
    assert [n for n in weights if n not in state] == zoo_1x_names(LAYERS)
    assert not any(n in (NEW_TOKEN_TYPE, NEW_POSITIONS) for n in weights)


def test_a_2020_checkpoint_imports_to_the_source_weights_and_names_its_generation(tmp_path: Path, capsys) -> None:
    code, report, out, err = run_import(MS1X, tmp_path / "model", capsys)
    assert code == 0, err
    assert report["generation"] == "1.x" and "r0.1-r1.1" in report["generation_names"]
    assert "model-zoo generation 1.x" in out
    assert report["architecture"] == "BertForPreTraining" and report["unmapped"] == 0
    assert report["dropped"] == 2 * 46 + 3  # adam_m / adam_v of every weight + global_step, learning_rate, loss_scale
    weights = load_weights(tmp_path / "model")
    pairs = pairs_1x()
    assert set(weights) == set(pairs.values())
    for ms_name, array in originals_1x().items():
        np.testing.assert_array_equal(weights[pairs[ms_name]], array, err_msg=ms_name)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["max_position_embeddings"] == 64 and config["type_vocab_size"] == 2  # from the old tables


def test_todays_checkpoint_is_named_2x(tmp_path: Path, capsys) -> None:
    code, report, out, _ = run_import(FP32, tmp_path / "model", capsys)
    assert code == 0 and report["generation"] == "2.x" and "model-zoo generation 2.x" in out


@pytest.mark.parametrize("generation", ["1.x", "2.x"])
def test_export_names_round_trip(generation: str, tmp_path: Path, capsys) -> None:
    """Import the 2020 file, export under each generation's names, import again: same weights, and the exported
    file carries exactly that generation's names (what load_checkpoint into that zoo's BertModel matches)."""
    assert run_import(MS1X, tmp_path / "model", capsys)[0] == 0
    out_ckpt = tmp_path / f"out-{generation}.ckpt"
    code = main(
        ["export-mindspore", "--model", str(tmp_path / "model"), "--output", str(out_ckpt), "--names", generation]
    )
    assert code == 0
    assert f"model-zoo generation {generation}" in capsys.readouterr().out
    source = originals_1x() if generation == "1.x" else originals("fp32")
    entries = index(out_ckpt)
    assert {e.name for e in entries} == set(source)
    if generation == "1.x":
        assert sorted(e.name for e in entries) == sorted(zoo_1x_names(LAYERS))
    with open(out_ckpt, "rb") as f:
        for e in entries:
            np.testing.assert_array_equal(read_array(f, e), source[e.name], err_msg=e.name)
    code, report, _, _ = run_import(out_ckpt, tmp_path / "again", capsys)
    assert code == 0 and report["generation"] == generation
    first, second = load_weights(tmp_path / "model"), load_weights(tmp_path / "again")
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def test_export_refuses_an_unknown_generation(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export-mindspore", "--model", str(tmp_path), "--output", str(tmp_path / "x.ckpt"), "--names", "3.x"])
    assert exit_info.value.code == 2 and "invalid choice: '3.x'" in capsys.readouterr().err


def _rewrite(dst: Path, rename, extra: dict[str, np.ndarray] | None = None) -> None:
    """The 1.x fixture renamed entry by entry with our own writer (None drops), plus extra tensors."""
    with open(MS1X, "rb") as f, open(dst, "wb") as out:
        for e in index(MS1X):
            if (name := rename(e.name)) is not None:
                write_array(out, name, read_array(f, e), e.tensor_type)
        for name, array in (extra or {}).items():
            write_array(out, name, array)


CLASSIFIER = "classifier of BertCLS / BertNER (dense_1)"
FINETUNE = {  # names from finetune_eval_model.py / bert_for_finetune.py / CRF.py (same file in r1.0 and today)
    "BertNER r1.0 (CRF)": (
        {"bert.dense_1.weight": (7, 16), "bert.dense_1.bias": (7,), "loss.transition_matrix": (9, 9)},
        {
            "classifier of BertCLS / BertNER (dense_1)": 2,
            "CRF transitions of BertNER (loss.transition_matrix, up to r1.0)": 1,
        },
    ),
    "BertNER r1.1 (CRF)": (
        {"bert.dense_1.weight": (7, 16), "bert.dense_1.bias": (7,), "loss.transitions": (9, 9)},
        {CLASSIFIER: 2, "CRF transitions of BertNER (loss.transitions, r1.1 on)": 1},
    ),
    "BertSquad": (
        {
            "bert.dense1.weight": (2, 16),
            "bert.dense1.bias": (2,),
            "total_num": (1,),
            "start_num": (1,),
            "end_num": (1,),
        },
        {"start/end head of BertSquad (dense1)": 2},
    ),
}


@pytest.mark.parametrize("layout", list(FINETUNE))
def test_fine_tuning_heads_of_both_generations_are_recognised(layout: str, tmp_path: Path, capsys) -> None:
    """A fine-tuned 2020 checkpoint (BertNER with CRF, BertSquad): the body imports, the task head is named as
    such in the report and left out (finetune trains a new one), nothing is 'could not map'."""
    extra_shapes, heads = FINETUNE[layout]
    extra = {name: np.full(shape, 0.5, np.float32) for name, shape in extra_shapes.items()}
    ckpt = tmp_path / "finetuned.ckpt"
    _rewrite(ckpt, lambda n: None if n.startswith(("bert.cls", "adam_")) else n, extra)
    code, report, out, err = run_import(ckpt, tmp_path / "model", capsys)
    assert code == 0, err
    assert report["generation"] == "1.x" and report["architecture"] == "BertModel"
    assert report["unmapped"] == 0 and "could not map" not in out
    assert {k: len(v) for k, v in report["task_heads"].items()} == heads
    assert "left out the fine-tuning head" in out
    assert not any(k.startswith(("classifier", "qa_", "loss")) for k in load_weights(tmp_path / "model"))


def test_a_file_mixing_both_generations_is_refused(tmp_path: Path, capsys) -> None:
    mixed = tmp_path / "mixed.ckpt"
    _rewrite(mixed, lambda n: n, {NEW_TOKEN_TYPE: np.zeros((2, 16), np.float32)})
    code, _, _, err = run_import(mixed, tmp_path / "m", capsys)
    assert code == 2 and "mixes two model-zoo generations" in err and "\n" not in err.strip()


def test_a_1x_file_missing_an_old_table_lists_it_by_its_old_name(tmp_path: Path, capsys) -> None:
    partial = tmp_path / "partial.ckpt"
    _rewrite(partial, lambda n: None if n == OLD_POSITIONS else n)
    code, _, _, err = run_import(partial, tmp_path / "m", capsys)
    assert code == 2 and "1 required BERT weights are missing (model-zoo generation 1.x names)" in err
    assert OLD_POSITIONS in err


@pytest.mark.parametrize("table", ["embeddings_for_position", "embeddings_table"])  # v1.0.0 / v1.1.1 names
def test_nezha_relative_positions_are_refused_not_imported_as_bert(table: str, tmp_path: Path, capsys) -> None:
    """NEZHA (use_relative_positions=True) has one relative-position table per layer; transformers' BERT has
    none, so importing it as BERT would silently compute something else."""
    name = f"bert.bert.bert_encoder.layers.0.attention.attention._generate_relative_positions_embeddings.{table}"
    nezha = tmp_path / "nezha.ckpt"
    _rewrite(nezha, lambda n: n, {name: np.zeros((33, 8), np.float32)})
    code, _, _, err = run_import(nezha, tmp_path / "m", capsys)
    assert code == 2 and name in err and "relative-position" in err and "\n" not in err.strip()
