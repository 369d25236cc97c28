"""Models: BERT presets built from a vocabulary, or a Hugging Face model folder; the tokenizer always
comes from the folder holding vocab.txt (BertTokenizer.from_pretrained(folder): constructing
BertTokenizer(vocab_file=...) directly in transformers 5 yields a 5-token vocabulary)."""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

PRESETS: dict[str, dict[str, int]] = {
    # name: hidden size, layers, attention heads, feed-forward size (~parameters with a 21k vocabulary)
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},  # ~3M
    "mini": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024},  # ~9M
    "small": {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "intermediate_size": 2048},  # ~25M
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},  # 102M
}
PRESET_HELP = "; ".join(
    f"{name}: {p['num_hidden_layers']} layers x {p['hidden_size']} hidden, {p['num_attention_heads']} heads"
    for name, p in PRESETS.items()
)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def load_tokenizer(folder: Path):
    from transformers import BertTokenizer

    if not (folder / "vocab.txt").is_file() and not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder} has no vocab.txt (a BERT WordPiece vocabulary) or tokenizer.json")
    return BertTokenizer.from_pretrained(str(folder))


def vocab_size(tokenizer) -> int:
    """Embedding rows the model needs: the largest token id + 1. bert-base-chinese's vocab.txt repeats 53
    entries (##0 ... ##9, ...), so len(tokenizer) (21,075) is smaller than its largest id (21,127)."""
    return max(max(tokenizer.get_vocab().values()) + 1, len(tokenizer))


def save_tokenizer(tokenizer, folder: Path, source: Path | None = None) -> None:
    """tokenizer.json (transformers 5) plus vocab.txt, so the folder also loads as a plain WordPiece vocabulary.

    vocab.txt is copied from the source folder when it has one: rewriting it from the tokenizer would drop
    the repeated lines and shift every later token id.
    """
    tokenizer.save_pretrained(str(folder))
    target = folder / "vocab.txt"
    if source is not None and (source / "vocab.txt").is_file():
        if (source / "vocab.txt").resolve() != target.resolve():
            shutil.copyfile(source / "vocab.txt", target)
        return
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    lines = [by_id.get(i, f"[unused_duplicate_{i}]") for i in range(vocab_size(tokenizer))]
    target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def build_char_vocab(texts: list[str], out_file: Path, min_count: int = 1) -> int:
    """A character vocabulary from the data, for when no pretrained vocabulary can ship (the demo)."""
    counts: Counter[str] = Counter()
    for text in texts:
        for char in text:
            if not char.isspace() and unicodedata.category(char)[0] != "C":
                counts[char.lower()] += 1
    chars = sorted(c for c, n in counts.items() if n >= min_count)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("\n".join([*SPECIAL_TOKENS, *chars]) + "\n", encoding="utf-8")
    return len(SPECIAL_TOKENS) + len(chars)


def init_model(vocab: Path, preset: str, output: Path, max_positions: int = 512, seed: int = 42) -> Path:
    """A new, randomly initialised BERT (masked-LM head) saved as a model folder with its vocabulary."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    output.mkdir(parents=True, exist_ok=True)
    vocab_file = vocab if vocab.is_file() else vocab / "vocab.txt"
    if vocab_file.resolve() != (output / "vocab.txt").resolve():
        shutil.copyfile(vocab_file, output / "vocab.txt")
    tokenizer = load_tokenizer(output)
    config = BertConfig(vocab_size=vocab_size(tokenizer), max_position_embeddings=max_positions, **PRESETS[preset])
    model = BertForMaskedLM(config)
    model.save_pretrained(str(output))
    save_tokenizer(tokenizer, output, output)
    info = {"preset": preset, "vocab_size": vocab_size(tokenizer)}
    (output / "jobsub_model.json").write_text(json.dumps(info) + "\n")
    return output


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
