"""Peak memory of `train_entry import-mindspore` on a bert-base-sized MindSpore checkpoint with Adam state.

    python benchmarks/mindspore_import.py [--keep FILE] [--mindspore-python /tmp/ms-venv/bin/python] [--names 1.x]

Writes a model-zoo BERT-base checkpoint (30522 x 768 embeddings, 12 layers, MLM/NSP heads, fp32) with an
AdamWeightDecay-style adam_m./adam_v. copy of every weight plus global_step / learning_rate: about 1.3 GB,
two thirds optimizer state. It is written with train_entry's own .ckpt writer, streamed, since MindSpore is
not needed for the measurement (tests/test_mindspore.py shows mindspore.load_checkpoint reads that writer's
files). Then, each in a fresh process, measures peak RSS (ru_maxrss) and wall time of:
  - the floor: the interpreter after importing what the import command imports (numpy, transformers' tokenizer)
  - import-mindspore itself
  - the peer, when --mindspore-python names an interpreter with MindSpore: mindspore.load_checkpoint of the
    same file (what a MindSpore user would run to get at the weights)
  - the refusal of the same file with one crafted tensor appended (`...layers.3000000.foo`, issue 18): it must be
    refused by name at the cost of the floor, not plan three million layers
Target (issue 10): peak RSS <= the model's size (the kept weights) + 200 MB.
--names 1.x writes the embeddings under the 2020 zoo's names (MindSpore r0.x-r1.1; train_entry/mindspore_names.py)
and the results go to benchmarks/results/mindspore-import-1.x.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from train_entry.mindspore_format import write_entry  # noqa: E402
from train_entry.mindspore_names import GENERATIONS  # noqa: E402

MB = 1_000_000
VOCAB, HIDDEN, LAYERS, INTER, POSITIONS = 30522, 768, 12, 3072, 512  # bert-base-uncased: 1.3 GB with Adam


def base_shapes(names: str = "2.x") -> dict[str, tuple[int, ...]]:
    p = "bert.bert."
    generation = GENERATIONS[names]
    shapes: dict[str, tuple[int, ...]] = {
        f"{p}bert_embedding_lookup.embedding_table": (VOCAB, HIDDEN),
        f"{p}{generation.token_type}": (2, HIDDEN),
        f"{p}{generation.position}": (POSITIONS, HIDDEN),
        f"{p}bert_embedding_postprocessor.layernorm.gamma": (HIDDEN,),
        f"{p}bert_embedding_postprocessor.layernorm.beta": (HIDDEN,),
    }
    for i in range(LAYERS):
        layer = f"{p}bert_encoder.layers.{i}."
        for part in ("query_layer", "key_layer", "value_layer"):
            shapes[f"{layer}attention.attention.{part}.weight"] = (HIDDEN, HIDDEN)
            shapes[f"{layer}attention.attention.{part}.bias"] = (HIDDEN,)
        shapes[f"{layer}attention.output.dense.weight"] = (HIDDEN, HIDDEN)
        shapes[f"{layer}attention.output.dense.bias"] = (HIDDEN,)
        shapes[f"{layer}attention.output.layernorm.gamma"] = (HIDDEN,)
        shapes[f"{layer}attention.output.layernorm.beta"] = (HIDDEN,)
        shapes[f"{layer}intermediate.weight"] = (INTER, HIDDEN)
        shapes[f"{layer}intermediate.bias"] = (INTER,)
        shapes[f"{layer}output.dense.weight"] = (HIDDEN, INTER)
        shapes[f"{layer}output.dense.bias"] = (HIDDEN,)
        shapes[f"{layer}output.layernorm.gamma"] = (HIDDEN,)
        shapes[f"{layer}output.layernorm.beta"] = (HIDDEN,)
    shapes[f"{p}dense.weight"], shapes[f"{p}dense.bias"] = (HIDDEN, HIDDEN), (HIDDEN,)
    shapes["bert.cls1.dense.weight"], shapes["bert.cls1.dense.bias"] = (HIDDEN, HIDDEN), (HIDDEN,)
    shapes["bert.cls1.layernorm.gamma"], shapes["bert.cls1.layernorm.beta"] = (HIDDEN,), (HIDDEN,)
    shapes["bert.cls1.output_bias"] = (VOCAB,)
    shapes["bert.cls2.dense.weight"], shapes["bert.cls2.dense.bias"] = (2, HIDDEN), (2,)
    return shapes


def write_checkpoint(path: Path, names: str = "2.x") -> int:
    """Stream random fp32 weights (and their two Adam moments) to path; returns the weights' bytes."""
    rng = np.random.default_rng(0)
    shapes = base_shapes(names)
    model_bytes = 0
    with open(path, "wb") as f:
        for prefix in ("", "adam_m.", "adam_v."):
            for name, shape in shapes.items():
                array = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
                write_entry(f, prefix + name, shape, "Float32", array.nbytes)
                f.write(array.tobytes())
                model_bytes += array.nbytes if not prefix else 0
        for name, value in (("global_step", np.array([1000], np.int32)), ("learning_rate", np.float32(1e-4))):
            array = np.asarray(value)
            write_entry(f, name, array.shape, "Int32" if array.dtype == np.int32 else "Float32", array.nbytes)
            f.write(array.tobytes())
    return model_bytes


def measure(python: str, code: str, *args: str) -> dict[str, float]:
    wrapper = (
        "import resource, sys, time, runpy\n"
        "t = time.perf_counter()\n"
        f"exec({code!r})\n"
        "print('BENCH', time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [python, "-c", wrapper, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=1800
    )
    if out.returncode != 0:
        raise SystemExit(f"{python} failed:\n{out.stderr[-3000:]}")
    wall, kb = out.stdout.rsplit("BENCH", 1)[1].split()
    return {"wall_s": round(float(wall), 2), "peak_rss_mb": round(int(kb) * 1024 / MB, 1)}


FLOOR = (
    "import numpy, transformers\n"
    "from transformers import BertConfig, BertTokenizer\n"
    "import train_entry.mindspore_convert, train_entry.modeling\n"
)
IMPORT = (
    "from train_entry.__main__ import main\n"
    "rc = main(['import-mindspore', '--ckpt', sys.argv[1], '--vocab', sys.argv[2], '--output', sys.argv[3]])\n"
    "assert rc == 0\n"
)
REFUSE = (
    "from train_entry.__main__ import main\n"
    "rc = main(['import-mindspore', '--ckpt', sys.argv[1], '--vocab', sys.argv[2], '--output', sys.argv[3]])\n"
    "assert rc == 2\n"
)
PEER = "import mindspore as ms\nparams = ms.load_checkpoint(sys.argv[1])\nassert len(params) > 600\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="write the checkpoint here and keep it (default: a temp folder)")
    parser.add_argument("--mindspore-python", help="an interpreter with mindspore installed, for the peer")
    parser.add_argument("--names", choices=sorted(GENERATIONS), default="2.x", help="model-zoo generation to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.keep or Path(tmp) / "bert_base_adam.ckpt"
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("".join(f"{t}\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) + "".join(
            f"tok{i}\n" for i in range(VOCAB - 5)
        ))  # fmt: skip
        started = time.perf_counter()
        model_bytes = write_checkpoint(ckpt, args.names)
        size = ckpt.stat().st_size
        took = time.perf_counter() - started
        print(f"checkpoint {size / MB:.0f} MB ({model_bytes / MB:.0f} MB weights) written in {took:.0f} s")
        results: dict[str, object] = {
            "names": args.names,
            "checkpoint_mb": round(size / MB, 1),
            "model_mb": round(model_bytes / MB, 1),
        }
        results["floor"] = measure(sys.executable, FLOOR)
        results["import-mindspore"] = measure(sys.executable, IMPORT, str(ckpt), str(vocab), str(Path(tmp) / "model"))
        written = (Path(tmp) / "model" / "model.safetensors").stat().st_size
        results["model_safetensors_mb"] = round(written / MB, 1)
        if args.mindspore_python:
            results["peer mindspore.load_checkpoint"] = measure(args.mindspore_python, PEER, str(ckpt))
        with open(ckpt, "ab") as f:  # last: the crafted tensor makes the file unimportable
            write_entry(f, "bert.bert.bert_encoder.layers.3000000.foo", (4,), "Float32", 16)
            f.write(bytes(16))
        refused = Path(tmp) / "refused"
        results["refuse layers.3000000.foo"] = measure(sys.executable, REFUSE, str(ckpt), str(vocab), str(refused))
        os.truncate(ckpt, size)  # a --keep file is left as it was written
    budget = model_bytes / MB + 200
    peak = results["import-mindspore"]["peak_rss_mb"]  # type: ignore[index]
    results["target_peak_rss_mb"] = round(budget, 1)
    results["target_met"] = peak <= budget
    print(json.dumps(results, indent=1))
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    name = "mindspore-import.json" if args.names == "2.x" else f"mindspore-import-{args.names}.json"
    (out / name).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
