"""MindSpore model-zoo BERT parameter names <-> transformers BERT names, and what the tensors say about the config.

The model zoo (models/official/nlp/Bert/src) nests BertModel inside wrappers, so a pre-training checkpoint names
`bert.bert.bert_encoder.layers.0.attention.attention.query_layer.weight` (BertNetworkWithLoss.bert ->
BertPreTraining.bert -> BertModel) and the heads `bert.cls1.*` (masked LM) and `bert.cls2.*` (next sentence);
a fine-tuning checkpoint has the same `bert.bert.` body beside its task head (`bert.dense_1.*`). The body's
prefix is found from the word-embedding table rather than assumed, and the heads are looked for beside it.

Layouts: MindSpore's nn.Dense stores its weight as (out_channels, in_channels), as torch.nn.Linear does, and
nn.Embedding as (rows, width), so no tensor needs transposing; every tensor's shape is checked against the
config, and a tensor stored the other way round is refused with its name rather than loaded wrongly.

Optimizer state is recognised by MindSpore's own naming: an optimizer clones each parameter under a prefix
(`adam_m.`, `adam_v.`, `lamb_m.`, `moments.`, ...), so "<prefix>.<a parameter's name>" is optimizer state
whatever the optimizer; the training loop's scalars (global_step, learning_rate, loss_scale, ...) are named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# BertModel's tensors, relative to its prefix -> transformers BertModel names (under "bert.")
EMBEDDINGS = {
    "bert_embedding_lookup.embedding_table": "embeddings.word_embeddings.weight",
    "bert_embedding_postprocessor.full_position_embedding.embedding_table": "embeddings.position_embeddings.weight",
    "bert_embedding_postprocessor.token_type_embedding.embedding_table": "embeddings.token_type_embeddings.weight",
    "bert_embedding_postprocessor.layernorm.gamma": "embeddings.LayerNorm.weight",
    "bert_embedding_postprocessor.layernorm.beta": "embeddings.LayerNorm.bias",
}
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
}
_LAYER_RE = re.compile(r"bert_encoder\.layers\.(\d+)\.")


def model_names(prefix: str, layers: int) -> dict[str, str]:
    """BertModel's MindSpore names under prefix -> transformers names (bert.*), for `layers` encoder layers."""
    names = {prefix + k: "bert." + v for k, v in EMBEDDINGS.items()}
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
    dropped: list[str] = field(default_factory=list)  # optimizer and training state, never read
    unmapped: list[str] = field(default_factory=list)  # model tensors with no place in BertForPreTraining
    missing: list[str] = field(default_factory=list)  # required tensors the checkpoint lacks
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
    layer_ids = {int(m.group(1)) for n in names if n.startswith(prefix) and (m := _LAYER_RE.match(n[len(prefix) :]))}
    layers = max(layer_ids) + 1 if layer_ids else 0
    required = model_names(prefix, layers)
    heads = head_prefix(prefix)
    mlm = {heads + k: v for k, v in MLM_HEAD.items()}
    nsp = {heads + k: v for k, v in NSP_HEAD.items()}
    plan = ImportPlan(prefix, layers, {})
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
    for name in names:
        if name in kept:
            continue
        rest = name.split(".", 1)[1] if "." in name else ""
        if name in TRAINING_STATE or rest in present:
            plan.dropped.append(name)  # an optimizer's clone of a parameter, or the loop's scalars
        else:
            plan.unmapped.append(name)
    return plan


def export_names(hf_names: Iterable[str], prefix: str = "bert.bert.") -> tuple[dict[str, str], list[str]]:
    """transformers names -> model-zoo names (BertNetworkWithLoss / BertCLS layout); and the names left out."""
    hf_names = list(hf_names)
    layer_ids = {int(m.group(1)) for n in hf_names if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", n))}
    layers = max(layer_ids) + 1 if layer_ids else 0
    heads = head_prefix(prefix)
    reverse = {v: k for k, v in model_names(prefix, layers).items()}
    reverse |= {v: heads + k for k, v in (MLM_HEAD | NSP_HEAD | CLASSIFIER).items()}
    mapping, left_out = {}, []
    for name in hf_names:
        if name in reverse:
            mapping[name] = reverse[name]
        else:
            left_out.append(name)
    return mapping, left_out
