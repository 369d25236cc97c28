"""MindSpore model-zoo BERT parameter names <-> transformers BERT names, and what the tensors say about the config.

The model zoo (models/official/nlp/Bert/src) nests BertModel inside wrappers, so a pre-training checkpoint names
`bert.bert.bert_encoder.layers.0.attention.attention.query_layer.weight` (BertNetworkWithLoss.bert ->
BertPreTraining.bert -> BertModel) and the heads `bert.cls1.*` (masked LM) and `bert.cls2.*` (next sentence);
a fine-tuning checkpoint has the same `bert.bert.` body beside its task head (`bert.dense_1.*`). The body's
prefix is found from the word-embedding table rather than assumed, and the heads are looked for beside it.

Layouts: MindSpore's nn.Dense stores its weight as (out_channels, in_channels), as torch.nn.Linear does, and
nn.Embedding as (rows, width), so no tensor needs transposing; every tensor's shape is checked against the
config, and a tensor stored the other way round is refused with its name rather than loaded wrongly.

Two generations of the zoo name the embeddings differently; the file's own names choose which (never a flag):
  "1.x"  MindSpore r0.1-r1.1 (2020; e.g. model_zoo/official/nlp/bert/src/bert_model.py at v1.0.0 and v1.1.1 of
         mindspore-ai/mindspore): EmbeddingPostprocessor keeps the token-type table and the position table as
         plain Parameters, `bert_embedding_postprocessor.embedding_table` and
         `bert_embedding_postprocessor.full_position_embeddings`.
  "2.x"  MindSpore r1.2 on (commit 812b4b0e "extract embedding table from unified interface", 2020-12-22, first
         tagged v1.2.0; today's mindspore-ai/models official/nlp/Bert): nn.Embedding cells,
         `bert_embedding_postprocessor.token_type_embedding.embedding_table` and
         `bert_embedding_postprocessor.full_position_embedding.embedding_table`.
Everything else BertModel holds, and the pre-training heads, are named alike in both. The fine-tuning heads
(finetune_eval_model.py / bert_for_finetune.py, same in both) are recognised and reported, not imported: BertCLS
and BertNER put a classifier at `dense_1`, BertSquad its span head at `dense1`, today's BertNER may add `lstm`,
and BertNER's CRF keeps its transition matrix at `loss.transition_matrix` (explicit name, up to v1.0.1) or
`loss.transitions` (v1.1 on). NEZHA's relative-position tables (`..._generate_relative_positions_embeddings.`)
have no place in transformers' BERT, so such a checkpoint is refused rather than imported as something else.

Optimizer state is recognised by MindSpore's own naming: an optimizer clones each parameter under a prefix
(`adam_m.`, `adam_v.`, `lamb_m.`, `moments.`, ...), so "<prefix>.<a parameter's name>" is optimizer state
whatever the optimizer; the training loop's scalars (global_step, learning_rate, loss_scale, ...) are named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from train_entry.data import DataError


@dataclass(frozen=True)
class Generation:
    """How one generation of the model zoo names the two embedding tables that changed (see the module doc)."""

    key: str
    label: str
    token_type: str
    position: str


GENERATIONS = {
    "1.x": Generation(
        "1.x",
        "MindSpore r0.1-r1.1 model zoo (2020): embeddings as plain Parameters",
        "bert_embedding_postprocessor.embedding_table",
        "bert_embedding_postprocessor.full_position_embeddings",
    ),
    "2.x": Generation(
        "2.x",
        "MindSpore r1.2+ model zoo (2021 on): embeddings as nn.Embedding",
        "bert_embedding_postprocessor.token_type_embedding.embedding_table",
        "bert_embedding_postprocessor.full_position_embedding.embedding_table",
    ),
}
DEFAULT_GENERATION = "2.x"


def embeddings(generation: str = DEFAULT_GENERATION) -> dict[str, str]:
    """BertModel's embedding tensors, relative to its prefix -> transformers names (under "bert.")."""
    g = GENERATIONS[generation]
    return {
        "bert_embedding_lookup.embedding_table": "embeddings.word_embeddings.weight",
        g.position: "embeddings.position_embeddings.weight",
        g.token_type: "embeddings.token_type_embeddings.weight",
        "bert_embedding_postprocessor.layernorm.gamma": "embeddings.LayerNorm.weight",
        "bert_embedding_postprocessor.layernorm.beta": "embeddings.LayerNorm.bias",
    }


EMBEDDINGS = embeddings()
LAYER = {  # under bert_encoder.layers.{i}. -> under encoder.layer.{i}.
    "attention.attention.query_layer.weight": "attention.self.query.weight",
    "attention.attention.query_layer.bias": "attention.self.query.bias",
    "attention.attention.key_layer.weight": "attention.self.key.weight",
    "attention.attention.key_layer.bias": "attention.self.key.bias",
    "attention.attention.value_layer.weight": "attention.self.value.weight",
    "attention.attention.value_layer.bias": "attention.self.value.bias",
    "attention.output.dense.weight": "attention.output.dense.weight",
    "attention.output.dense.bias": "attention.output.dense.bias",
    "attention.output.layernorm.gamma": "attention.output.LayerNorm.weight",
    "attention.output.layernorm.beta": "attention.output.LayerNorm.bias",
    "intermediate.weight": "intermediate.dense.weight",
    "intermediate.bias": "intermediate.dense.bias",
    "output.dense.weight": "output.dense.weight",
    "output.dense.bias": "output.dense.bias",
    "output.layernorm.gamma": "output.LayerNorm.weight",
    "output.layernorm.beta": "output.LayerNorm.bias",
}
POOLER = {"dense.weight": "pooler.dense.weight", "dense.bias": "pooler.dense.bias"}
# heads beside BertModel (BertPreTraining.cls1 / .cls2) -> transformers BertForPreTraining names
MLM_HEAD = {
    "cls1.dense.weight": "cls.predictions.transform.dense.weight",
    "cls1.dense.bias": "cls.predictions.transform.dense.bias",
    "cls1.layernorm.gamma": "cls.predictions.transform.LayerNorm.weight",
    "cls1.layernorm.beta": "cls.predictions.transform.LayerNorm.bias",
    "cls1.output_bias": "cls.predictions.bias",  # the decoder weight is the word-embedding table in both
}
NSP_HEAD = {"cls2.dense.weight": "cls.seq_relationship.weight", "cls2.dense.bias": "cls.seq_relationship.bias"}
CLASSIFIER = {"dense_1.weight": "classifier.weight", "dense_1.bias": "classifier.bias"}  # BertCLSModel, export only
# fine-tuning heads beside BertModel (recognised, reported, left out: finetune trains its own head)
TASK_HEADS = {
    "dense_1.": "classifier of BertCLS / BertNER (dense_1)",
    "dense1.": "start/end head of BertSquad (dense1)",
    "lstm.": "BiLSTM of BertNER with_lstm (lstm)",
}
# ...and beside the task model (BertNER.loss = CRF)
CRF_HEADS = {
    "loss.transition_matrix": "CRF transitions of BertNER (loss.transition_matrix, up to r1.0)",
    "loss.transitions": "CRF transitions of BertNER (loss.transitions, r1.1 on)",
}
RELATIVE_POSITIONS = "._generate_relative_positions_embeddings."
MAX_LAYER_DIGITS = 9  # int() of a longer run is refused by name (names are <= 4096 bytes anyway)
WORD_EMBEDDINGS = "bert_embedding_lookup.embedding_table"
TRAINING_STATE = {
    "global_step",
    "learning_rate",
    "loss_scale",
    "scale_sense",
    "current_iterator_step",
    "last_overflow_iterator_step",
    "epoch_num",
    "step_num",
    "beta1_power",
    "beta2_power",
    "total_num",  # BertSquad's evaluation counters
    "start_num",
    "end_num",
    "local_step",  # gradient accumulation (BertTrainAccumulate...)
    "accu_overflow",
    "accu_loss",
}
_LAYER_RE = re.compile(r"bert_encoder\.layers\.([^.]*)\.")
_HF_LAYER_RE = re.compile(r"bert\.encoder\.layer\.([^.]*)\.")


def layer_count(names: Iterable[str], pattern: re.Pattern[str], prefix: str = "") -> int:
    """How many encoder layers the names hold, checked before anything is sized by it: every index must be a
    short decimal and the indices must run 0..n-1 without a gap, so one crafted tensor named
    `...layers.3000000.foo` is refused by name instead of making the plan list three million layers."""
    found: dict[int, str] = {}
    for name in names:
        if not name.startswith(prefix) or not (m := pattern.match(name[len(prefix) :])):
            continue
        text = m.group(1)
        if not text.isdigit() or not text.isascii() or len(text) > MAX_LAYER_DIGITS:
            raise DataError(f"tensor {name[:300]}: encoder layer index {text[:20]!r} is not a layer number")
        found.setdefault(int(text), name)
    for expected, index in enumerate(sorted(found)):
        if index != expected:
            raise DataError(
                f"tensor {found[index][:300]}: encoder layer {index}, but layer {expected} is absent (the file holds "
                f"{len(found)} layer indices): the file is damaged or crafted"
            )
    return len(found)


def detect_generation(names: Iterable[str], prefix: str) -> str:
    """Which zoo generation named these embeddings; one line when the file mixes both."""
    present = set(names)
    hits = {
        key: [prefix + n for n in (g.token_type, g.position) if prefix + n in present] for key, g in GENERATIONS.items()
    }
    found = [key for key, names_found in hits.items() if names_found]
    if len(found) > 1:
        raise DataError(
            f"the checkpoint mixes two model-zoo generations ({hits['1.x'][0]} and {hits['2.x'][0]}): "
            "it was not saved by one model-zoo BERT"
        )
    return found[0] if found else DEFAULT_GENERATION


def model_names(prefix: str, layers: int, generation: str = DEFAULT_GENERATION) -> dict[str, str]:
    """BertModel's MindSpore names under prefix -> transformers names (bert.*), for `layers` encoder layers."""
    names = {prefix + k: "bert." + v for k, v in embeddings(generation).items()}
    for i in range(layers):
        names |= {f"{prefix}bert_encoder.layers.{i}.{k}": f"bert.encoder.layer.{i}.{v}" for k, v in LAYER.items()}
    names |= {prefix + k: "bert." + v for k, v in POOLER.items()}
    return names


def head_prefix(prefix: str) -> str:
    """Where BertPreTraining's heads live: beside BertModel ("bert.bert." -> "bert.")."""
    parts = prefix.rstrip(".").split(".")
    return ".".join(parts[:-1]) + "." if len(parts) > 1 else ""


@dataclass
class ImportPlan:
    """Which checkpoint tensors become which transformers tensors, and what is left behind."""

    prefix: str
    layers: int
    mapping: dict[str, str]  # MindSpore name -> transformers name, in file order
    generation: str = DEFAULT_GENERATION
    dropped: list[str] = field(default_factory=list)  # optimizer and training state, never read
    unmapped: list[str] = field(default_factory=list)  # model tensors with no place in BertForPreTraining
    missing: list[str] = field(default_factory=list)  # required tensors the checkpoint lacks
    task_heads: dict[str, list[str]] = field(default_factory=dict)  # fine-tuning head -> its tensors, left out
    relative_positions: list[str] = field(default_factory=list)  # NEZHA tables: refused
    mlm_head: bool = False
    nsp_head: bool = False


def find_prefix(names: Iterable[str]) -> str | None:
    """BertModel's prefix: the shortest name ending in the word-embedding table (clones are longer)."""
    found = [n[: -len(WORD_EMBEDDINGS)] for n in names if n.endswith(WORD_EMBEDDINGS)]
    found = [p for p in found if p == "" or p.endswith(".")]
    return min(found, key=len) if found else None


def plan_import(names: list[str]) -> ImportPlan | None:
    """Map a checkpoint's tensor names; None when nothing in it looks like a model-zoo BERT."""
    prefix = find_prefix(names)
    if prefix is None:
        return None
    present = set(names)
    layers = layer_count(names, _LAYER_RE, prefix)
    generation = detect_generation(names, prefix)
    required = model_names(prefix, layers, generation)
    heads = head_prefix(prefix)
    mlm = {heads + k: v for k, v in MLM_HEAD.items()}
    nsp = {heads + k: v for k, v in NSP_HEAD.items()}
    plan = ImportPlan(prefix, layers, {}, generation)
    plan.relative_positions = [n for n in names if RELATIVE_POSITIONS in n and n.startswith(prefix)]
    plan.mlm_head = any(n in present for n in mlm)
    plan.nsp_head = any(n in present for n in nsp)
    wanted = dict(required)
    if plan.mlm_head:
        wanted |= mlm
    if plan.nsp_head:
        wanted |= nsp
    plan.missing = [n for n in wanted if n not in present]
    if layers == 0:
        plan.missing.append(f"{prefix}bert_encoder.layers.0.* (no encoder layers at all)")
    plan.mapping = {n: wanted[n] for n in names if n in wanted}
    kept = set(plan.mapping)
    outer = head_prefix(heads) if heads else ""
    for name in names:
        if name in kept:
            continue
        rest = name.split(".", 1)[1] if "." in name else ""
        if name in TRAINING_STATE or rest in present:
            plan.dropped.append(name)  # an optimizer's clone of a parameter, or the loop's scalars
        elif (head := _task_head(name, heads, outer)) is not None:
            plan.task_heads.setdefault(head, []).append(name)
        else:
            plan.unmapped.append(name)
    return plan


def _task_head(name: str, heads: str, outer: str) -> str | None:
    """The fine-tuning head a tensor belongs to (beside BertModel, or BertNER's CRF beside the task model)."""
    for start, what in TASK_HEADS.items():
        if name.startswith(heads + start):
            return what
    for crf, what in CRF_HEADS.items():
        if name == outer + crf:
            return what
    return None


def export_names(
    hf_names: Iterable[str], prefix: str = "bert.bert.", generation: str = DEFAULT_GENERATION
) -> tuple[dict[str, str], list[str]]:
    """transformers names -> model-zoo names (BertNetworkWithLoss / BertCLS layout) of one zoo generation; and
    the names left out."""
    hf_names = list(hf_names)
    layers = layer_count(hf_names, _HF_LAYER_RE)
    heads = head_prefix(prefix)
    reverse = {v: k for k, v in model_names(prefix, layers, generation).items()}
    reverse |= {v: heads + k for k, v in (MLM_HEAD | NSP_HEAD | CLASSIFIER).items()}
    mapping, left_out = {}, []
    for name in hf_names:
        if name in reverse:
            mapping[name] = reverse[name]
        else:
            left_out.append(name)
    return mapping, left_out
