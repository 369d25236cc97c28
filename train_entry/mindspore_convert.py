"""`import-mindspore` / `export-mindspore`: a model-zoo BERT .ckpt <-> a transformers model folder.

Import streams: the checkpoint is indexed (names, shapes, byte spans), the kept tensors' bytes are copied a
chunk at a time into model.safetensors (converted to float32 on the way unless --dtype keep), and optimizer
state is never read. Peak memory is therefore a few chunks plus the interpreter, not the checkpoint's size
(benchmarks/mindspore_import.py measures it). The folder is what `init` writes: config.json, model.safetensors,
vocab.txt + tokenizer files, jobsub_model.json, so finetune / evaluate / pretrain read it as they read any.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from train_entry.data import DataError
from train_entry.mindspore_format import (
    DTYPES,
    MAX_DIMS,
    MAX_ENTRIES,
    MAX_NAME_BYTES,
    READ_CHUNK,
    CheckpointError,
    Entry,
    index,
    iter_chunks,
    verify_crc,
    write_entry,
)
from train_entry.mindspore_names import DEFAULT_GENERATION, GENERATIONS, ImportPlan, export_names, plan_import
from train_entry.modeling import PRESETS

SAFETENSORS_TYPES = {
    "Float32": "F32",
    "Float16": "F16",
    "BFloat16": "BF16",
    "Float64": "F64",
    "Int8": "I8",
    "UInt8": "U8",
    "Int16": "I16",
    "UInt16": "U16",
    "Int32": "I32",
    "UInt32": "U32",
    "Int64": "I64",
    "UInt64": "U64",
    "Bool": "BOOL",
}
FROM_SAFETENSORS = {v: k for k, v in SAFETENSORS_TYPES.items()}
FLOATS = {"Float32", "Float16", "BFloat16", "Float64"}
CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
)
MIB = 1 << 20


def _size(nbytes: int) -> str:
    return f"{nbytes / MIB:.1f} MiB" if nbytes >= MIB else f"{nbytes / 1024:.1f} KiB"


def _names(names: list[str], limit: int = 20) -> str:
    """A list for one printed line: a crafted file's 100,000 odd names must not become a 10 MB line."""
    shown = ", ".join(n[:200] for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more in mindspore_import.json)" if len(names) > limit else "")


# --- config -------------------------------------------------------------------------------------------------


def _read_config(path: Path) -> dict[str, Any]:
    """bert_config.json (Google / transformers keys), or a flat YAML/JSON mapping with the same keys."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"--config {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"--config {path}: not valid JSON/YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise DataError(f"--config {path}: expected a mapping of BERT settings (hidden_size, ...)")
    return {k: data[k] for k in CONFIG_KEYS if k in data}


def infer_config(
    plan: ImportPlan,
    entries: dict[str, Entry],
    config_file: Path | None = None,
    preset: str | None = None,
    num_heads: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The BertConfig settings, from the tensors first; heads from --num-heads / --config / --preset, else
    hidden/64 (BERT's head width). Settings the tensors determine must agree with what the user passed."""
    notes: list[str] = []
    by_hf = {hf: entries[ms] for ms, hf in plan.mapping.items()}
    vocab, hidden = by_hf["bert.embeddings.word_embeddings.weight"].dims
    from_tensors: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": plan.layers,
        "intermediate_size": by_hf["bert.encoder.layer.0.intermediate.dense.weight"].dims[0],
        "max_position_embeddings": by_hf["bert.embeddings.position_embeddings.weight"].dims[0],
        "type_vocab_size": by_hf["bert.embeddings.token_type_embeddings.weight"].dims[0],
    }
    given: dict[str, Any] = {}
    source = ""
    if config_file is not None:
        given, source = _read_config(config_file), f"--config {config_file}"
    elif preset is not None:
        given, source = dict(PRESETS[preset]), f"--preset {preset}"
    for key, value in from_tensors.items():
        if value < 1:
            raise DataError(f"the checkpoint's tensors give {key}={value}: no BERT has that; the file is damaged")
        if key in given and given[key] != value:
            raise DataError(
                f"{source} says {key}={given[key]} but the checkpoint's tensors say {value}; "
                "pass the config that matches this checkpoint (or none: the tensors determine it)"
            )
    # What the model zoo computes: MindSpore's nn.GELU() is the tanh approximation (transformers' "gelu_new")
    # and nn.LayerNorm's epsilon is 1e-7; a config's "gelu" names MindSpore's GELU, so it means the same.
    config: dict[str, Any] = {
        "hidden_act": "gelu_new",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-7,
    }
    config |= given
    config |= from_tensors
    if config["hidden_act"] == "gelu":
        config["hidden_act"] = "gelu_new"
    if num_heads is not None:
        if num_heads < 1:
            raise DataError(f"--num-heads {num_heads}: the number of attention heads must be 1 or more")
        config["num_attention_heads"] = num_heads
    elif "num_attention_heads" not in config:
        if hidden % 64:
            raise DataError(
                f"the tensors do not tell the number of attention heads and hidden size {hidden} is not a "
                "multiple of 64: pass --num-heads N or --config bert_config.json"
            )
        config["num_attention_heads"] = hidden // 64
        notes.append(f"attention heads: {hidden // 64} assumed (hidden {hidden} / 64); --num-heads overrides")
    heads = config["num_attention_heads"]
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
        raise DataError(f"{source}: num_attention_heads={heads!r} must be a whole number of 1 or more")
    if hidden % heads:
        raise DataError(
            f"hidden size {hidden} is not divisible by {config['num_attention_heads']} attention heads; "
            "pass the right --num-heads"
        )
    return config, notes


def expected_shape(hf_name: str, config: dict[str, Any]) -> tuple[int, ...]:
    """The shape transformers' BertForPreTraining gives a tensor (weights of Linear are (out, in))."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    if hf_name.endswith("word_embeddings.weight"):
        return (config["vocab_size"], h)
    if hf_name.endswith("position_embeddings.weight"):
        return (config["max_position_embeddings"], h)
    if hf_name.endswith("token_type_embeddings.weight"):
        return (config["type_vocab_size"], h)
    if hf_name == "cls.predictions.bias":
        return (config["vocab_size"],)
    if hf_name.startswith("cls.seq_relationship."):
        return (2, h) if hf_name.endswith("weight") else (2,)
    if ".intermediate.dense." in hf_name:
        return (inter, h) if hf_name.endswith("weight") else (inter,)
    if ".output.dense." in hf_name and ".attention." not in hf_name:
        return (h, inter) if hf_name.endswith("weight") else (h,)
    if hf_name.endswith(".weight") and ("LayerNorm" not in hf_name):
        return (h, h)
    return (h,)


# --- safetensors, streamed ------------------------------------------------------------------------------------


def _safetensors_header(tensors: list[tuple[str, str, tuple[int, ...], int]], metadata: dict[str, str]) -> bytes:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as the safetensors library writes it
    return struct.pack("<Q", len(raw)) + raw


def _converted(chunks: Iterator[bytes], source: str, target: str) -> Iterator[bytes]:
    if source == target:
        yield from chunks
        return
    for chunk in chunks:
        array = np.frombuffer(chunk, dtype=DTYPES[source])
        if source == "BFloat16":  # the upper half of a float32
            yield (array.astype("<u4") << 16).tobytes()
        else:
            yield array.astype(DTYPES[target]).tobytes()


MAX_SAFETENSORS_HEADER = 16 << 20  # ~100 bytes per tensor: 16 MiB is 150,000 tensors; BERT-large has ~400


def _header_error(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable safetensors file ({what}); save the model again")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise CheckpointError(
                f"tensor {key[:200] if key.isprintable() else ascii(key)[:200]} is listed twice in the header"
            )
        seen[key] = value
    return seen


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_safetensors_index(path: Path) -> list[Entry]:
    """A safetensors file's tensors as Entries (name, shape, type, byte span), without reading their data.

    The header is untrusted JSON: its size is bounded before it is read, its nesting by the JSON parser's own
    recursion limit, and every tensor's dtype, shape and data_offsets are checked in exact integers (start <=
    end, inside the file, end - start == shape x dtype, no two tensors sharing bytes) before any Entry exists,
    so nothing downstream ever copies a negative or out-of-file span.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise _header_error(path, "shorter than its 8-byte header length")
        length = struct.unpack("<Q", head)[0]
        if length > MAX_SAFETENSORS_HEADER:
            raise _header_error(path, f"header length {length} bytes; at most {MAX_SAFETENSORS_HEADER} are accepted")
        if 8 + length > size:
            raise _header_error(path, f"header length {length} runs past the end of the {size}-byte file")
        raw = f.read(length)
    try:
        header = json.loads(raw, object_pairs_hook=_no_duplicates)
    except CheckpointError as exc:
        raise _header_error(path, str(exc)) from exc
    except RecursionError as exc:
        raise _header_error(path, "header JSON nested too deeply") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _header_error(path, "unreadable header JSON") from exc
    if not isinstance(header, dict):
        raise _header_error(path, "the header is not a JSON object")
    if len(header) > MAX_ENTRIES + 1:
        raise _header_error(path, f"{len(header) - 1} tensors listed; at most {MAX_ENTRIES} are accepted")
    data_start, data_size = 8 + length, size - 8 - length
    entries, spans = [], []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise _header_error(path, "__metadata__ is not an object")
            continue
        entry = _safetensors_entry(path, name, info, data_start, data_size)
        spans.append((entry.spans[0][0], entry.spans[0][0] + entry.nbytes, name))
        entries.append(entry)
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise _header_error(path, f"tensors {first} and {second} share bytes (their data_offsets overlap)")
    return entries


def _safetensors_entry(path: Path, name: str, info: Any, data_start: int, data_size: int) -> Entry:
    """One header item, checked field by field; the message names the tensor and the field."""

    def bad(what: str) -> CheckpointError:
        shown = name[:200] if name.isprintable() else ascii(name)[:200]  # no terminal escapes reach a screen
        return CheckpointError(f"{path}: tensor {shown}: {what}; the file is damaged or not a safetensors file")

    if len(name.encode("utf-8", "replace")) > MAX_NAME_BYTES:
        raise bad(f"a name of {len(name)} characters")
    if not name.isprintable():
        raise bad("a name with control characters")
    if not isinstance(info, dict):
        raise bad("its header entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in FROM_SAFETENSORS:
        raise bad(f"dtype {str(dtype)[:20]!r}, which MindSpore cannot hold (known: {', '.join(FROM_SAFETENSORS)})")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) for d in shape):
        raise bad(f"shape must be a list of at most {MAX_DIMS} integers")
    if any(d < 0 or d > data_size for d in shape):
        raise bad(f"shape {shape} has a dimension below 0 or larger than the {data_size} bytes of data")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise bad("data_offsets must be [start, end]")
    start, end = offsets
    if not 0 <= start <= end <= data_size:
        raise bad(f"data_offsets [{start}, {end}] are not inside the {data_size} bytes of data (or end before start)")
    expected = math.prod(shape) * DTYPES[FROM_SAFETENSORS[dtype]].itemsize
    if end - start != expected:
        raise bad(f"data_offsets span {end - start} bytes but shape {shape} of {dtype} needs {expected}")
    return Entry(name, tuple(shape), FROM_SAFETENSORS[dtype], [(data_start + start, end - start)])


def _index_any(path: Path) -> tuple[list[Entry], str]:
    """A .ckpt, or the safetensors file MindSpore 2.x writes with save_checkpoint(format='safetensors')."""
    if path.suffix == ".safetensors":  # its own reader's messages, even when the header is too damaged to sniff
        return read_safetensors_index(path), "safetensors"
    try:
        return index(path), "ckpt"
    except CheckpointError as exc:
        if "safetensors file" not in str(exc):
            raise
    return read_safetensors_index(path), "safetensors"


# --- import ---------------------------------------------------------------------------------------------------


def import_mindspore(
    ckpt: Path,
    vocab: Path,
    output: Path,
    config_file: Path | None = None,
    preset: str | None = None,
    num_heads: int | None = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Convert a model-zoo BERT checkpoint into a transformers model folder; returns the report."""
    ckpt, vocab, output = Path(ckpt), Path(vocab), Path(output)
    if not ckpt.is_file():
        raise DataError(f"--ckpt {ckpt}: no such file")
    vocab_file = vocab / "vocab.txt" if vocab.is_dir() else vocab
    if not vocab_file.is_file():
        raise DataError(f"--vocab {vocab}: no such file (the vocab.txt the checkpoint was trained with)")
    entries, kind = _index_any(ckpt)
    if kind == "ckpt" and verify_crc(ckpt) is False:
        raise CheckpointError(f"{ckpt}: its CRC does not match its contents: the file is corrupted, copy it again")
    names = [e.name for e in entries]
    try:
        plan = plan_import(names)
    except DataError as exc:
        raise DataError(f"{ckpt}: {exc}") from exc
    if plan is None:
        sample = ", ".join(names[:5]) or "no tensors"
        raise DataError(
            f"{ckpt}: no MindSpore model-zoo BERT in it (no ...bert_embedding_lookup.embedding_table; it holds "
            f"{sample}{', ...' if len(names) > 5 else ''})"
        )
    if plan.relative_positions:
        raise DataError(
            f"{ckpt}: {plan.relative_positions[0]} is a relative-position table (NEZHA, use_relative_positions="
            "True); transformers' BERT has absolute positions only, so this model cannot be imported faithfully"
        )
    if plan.missing:
        raise DataError(
            f"{ckpt}: {len(plan.missing)} required BERT weights are missing (model-zoo generation "
            f"{plan.generation} names): {_names(plan.missing)}"
        )
    by_name = {e.name: e for e in entries}
    try:
        config, notes = infer_config(plan, by_name, config_file, preset, num_heads)
    except DataError as exc:
        raise DataError(f"{ckpt}: {exc}") from exc
    for ms_name, hf_name in plan.mapping.items():
        entry = by_name[ms_name]
        want = expected_shape(hf_name, config)
        if entry.dims != want:
            flipped = " (stored transposed?)" if entry.dims == want[::-1] else ""
            raise DataError(f"{ckpt}: {ms_name} has shape {list(entry.dims)}, expected {list(want)}{flipped}")
        if entry.tensor_type not in FLOATS:
            raise DataError(f"{ckpt}: {ms_name} holds {entry.tensor_type}, expected floating-point weights")

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.import-", dir=output.parent))
    try:
        report = _write_folder(staging, ckpt, vocab, vocab_file, kind, plan, by_name, config, notes, dtype)
        output.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():  # only now: a failed import leaves an earlier folder as it was
            os.replace(item, output / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report["model_dir"] = str(output)
    (output / "mindspore_import.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _write_folder(
    output: Path,
    ckpt: Path,
    vocab: Path,
    vocab_file: Path,
    kind: str,
    plan: ImportPlan,
    by_name: dict[str, Entry],
    config: dict[str, Any],
    notes: list[str],
    dtype: str,
) -> dict[str, Any]:
    """Everything the model folder holds, written into `output` (a staging folder)."""
    from train_entry.modeling import load_tokenizer, save_tokenizer, vocab_size

    (output / "vocab.txt").write_bytes(vocab_file.read_bytes())
    tokenizer = load_tokenizer(output)
    if vocab_size(tokenizer) > config["vocab_size"]:
        raise DataError(
            f"--vocab {vocab}: {vocab_size(tokenizer)} tokens but the checkpoint's embedding has "
            f"{config['vocab_size']} rows: pass the vocab.txt this checkpoint was trained with"
        )

    types = {e.tensor_type for e in (by_name[n] for n in plan.mapping)}
    out_type = {ms: ("Float32" if dtype == "float32" else by_name[ms].tensor_type) for ms in plan.mapping}
    tensors = []
    for ms_name, hf_name in plan.mapping.items():
        entry = by_name[ms_name]
        nbytes = int(np.prod(entry.dims, dtype=np.int64)) * DTYPES[out_type[ms_name]].itemsize
        tensors.append((hf_name, SAFETENSORS_TYPES[out_type[ms_name]], entry.dims, nbytes))
    tensors.sort(key=lambda t: t[0])
    order = {hf: ms for ms, hf in plan.mapping.items()}
    partial = output / "model.safetensors.partial"
    written = 0
    with open(ckpt, "rb") as src, open(partial, "wb") as dst:
        dst.write(_safetensors_header(tensors, {"format": "pt"}))
        for hf_name, _, _, nbytes in tensors:
            entry = by_name[order[hf_name]]
            start = dst.tell()
            for chunk in _converted(iter_chunks(src, entry, READ_CHUNK), entry.tensor_type, out_type[entry.name]):
                dst.write(chunk)
            if dst.tell() - start != nbytes:
                raise CheckpointError(f"{ckpt}: {entry.name} did not read back whole")
            written += nbytes
    os.replace(partial, output / "model.safetensors")

    from transformers import BertConfig

    architecture = (
        "BertForPreTraining" if plan.mlm_head and plan.nsp_head else "BertForMaskedLM" if plan.mlm_head else "BertModel"
    )
    weight_type = "float32" if dtype == "float32" or types == {"Float32"} else _torch_name(types)
    BertConfig(architectures=[architecture], dtype=weight_type, **config).to_json_file(str(output / "config.json"))
    save_tokenizer(tokenizer, output, output)
    dropped_bytes = sum(by_name[n].nbytes for n in plan.dropped)
    generation = GENERATIONS[plan.generation]
    heads = {what: [f"{n} {list(by_name[n].dims)}" for n in names] for what, names in plan.task_heads.items()}
    report: dict[str, Any] = {
        "task": "import-mindspore",
        "checkpoint": str(ckpt),
        "format": kind,
        "generation": generation.key,
        "generation_names": generation.label,
        "model_dir": str(output),
        "architecture": architecture,
        "kept": len(plan.mapping),
        "kept_bytes": written,
        "dropped": len(plan.dropped),
        "dropped_bytes_not_read": dropped_bytes,
        "unmapped": len(plan.unmapped),
        "task_heads": heads,
        "source_types": sorted(types),
        "config": {k: config[k] for k in CONFIG_KEYS},
        "notes": notes,
        "mapping": plan.mapping,
        "dropped_names": plan.dropped,
        "unmapped_names": plan.unmapped,
    }
    info = {"source": "mindspore", "checkpoint": ckpt.name, "vocab_size": config["vocab_size"]}
    (output / "jobsub_model.json").write_text(json.dumps(info) + "\n")
    print(f"model-zoo generation {generation.key}: {generation.label}", flush=True)
    print(
        f"kept {len(plan.mapping)} tensors ({_size(written)}, {', '.join(sorted(types))}"
        f"{' -> Float32' if dtype == 'float32' and types != {'Float32'} else ''}) as {architecture}",
        flush=True,
    )
    print(
        f"dropped {len(plan.dropped)} optimizer/training-state tensors ({_size(dropped_bytes)}, not read)",
        flush=True,
    )
    for what, described in heads.items():
        print(f"left out the fine-tuning head ({what}; finetune trains its own): {_names(described)}", flush=True)
    if plan.unmapped:
        print(f"could not map {len(plan.unmapped)} tensors (left out): {_names(plan.unmapped)}", flush=True)
    for note in notes:
        print(note, flush=True)
    return report


def _torch_name(types: set[str]) -> str:
    if len(types) == 1:
        return {"Float16": "float16", "BFloat16": "bfloat16", "Float64": "float64"}.get(next(iter(types)), "float32")
    return "float32"


# --- export ---------------------------------------------------------------------------------------------------


def export_mindspore(
    model_dir: Path, output: Path, prefix: str = "bert.bert.", names: str = DEFAULT_GENERATION
) -> dict[str, Any]:
    """A transformers BERT folder (model.safetensors) -> a .ckpt under the model zoo's names of one generation
    ("1.x": what MindSpore r0.x-r1.1's zoo loads, "2.x": r1.2 on), streamed."""
    if names not in GENERATIONS:
        raise DataError(f"--names {names}: one of {', '.join(GENERATIONS)}")
    model_dir, output = Path(model_dir), Path(output)
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise DataError(f"--model {model_dir}: no model.safetensors (a model folder written by train_entry)")
    if prefix and not prefix.endswith("."):
        prefix += "."
    entries = read_safetensors_index(weights)
    base = ("embeddings.", "encoder.", "pooler.")
    for e in entries:  # a BertModel saved on its own has no "bert." prefix
        if e.name.startswith(base):
            e.name = "bert." + e.name
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}  # the embedding table / bias again
    try:
        mapping, left_out = export_names([e.name for e in entries if e.name not in tied], prefix, names)
    except DataError as exc:
        raise DataError(f"--model {model_dir}: {exc}") from exc
    if "bert.embeddings.word_embeddings.weight" not in mapping:
        raise DataError(f"--model {model_dir}: no BERT word embeddings in model.safetensors")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    total = 0
    try:
        with open(weights, "rb") as src, open(partial, "wb") as dst:
            for entry in entries:
                if entry.name not in mapping:
                    continue
                write_entry(dst, mapping[entry.name], entry.dims, entry.tensor_type, entry.nbytes)
                for chunk in iter_chunks(src, entry):
                    dst.write(chunk)
                total += entry.nbytes
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    print(
        f"exported {len(mapping)} tensors ({_size(total)}) to {output} under {prefix}*, "
        f"model-zoo generation {names} ({GENERATIONS[names].label})",
        flush=True,
    )
    if left_out:
        print(f"left out {len(left_out)} tensors with no model-zoo name: {_names(left_out)}", flush=True)
    return {
        "task": "export-mindspore",
        "checkpoint": str(output),
        "generation": names,
        "exported": len(mapping),
        "exported_bytes": total,
        "left_out": len(left_out),
        "left_out_names": left_out,
    }
