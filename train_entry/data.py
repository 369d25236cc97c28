"""Datasets: CLUE / FewCLUE TNEWS JSON lines, label files, and plain JSONL/CSV with chosen fields.

Every malformed line is reported with its file and line number; an unknown label is named. Labels are
accepted as strings or integers ("102" and 102 are the same label), as CLUE and FewCLUE disagree.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

LABEL_FILES = ("labels.json", "label_index2en2zh.json")
SPLIT_FILES = {
    "train": ("train.json", "train_few_all.json", "train.jsonl", "train.csv"),
    "dev": ("dev.json", "dev_few_all.json", "dev.jsonl", "dev.csv"),
    "test": ("test.json", "test_public.json", "test.jsonl", "test.csv"),
    "unlabeled": ("unlabeled.json", "unlabeled.jsonl"),
}


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


@dataclass
class LabelSet:
    ids: list[str]  # label ids as strings, in class-index order
    names: dict[str, str] = field(default_factory=dict)  # id -> English name (label_desc)
    names_zh: dict[str, str] = field(default_factory=dict)

    def index(self, label: object, where: str) -> int:
        key = str(label).strip()
        if key in self._positions:
            return self._positions[key]
        if key in self._by_name:
            return self._by_name[key]
        raise DataError(f"{where}: unknown label {key!r} (known: {', '.join(self.ids)})")

    def display(self, index: int) -> str:
        label = self.ids[index]
        return self.names.get(label, label)

    def __post_init__(self) -> None:
        self._positions = {label: i for i, label in enumerate(self.ids)}
        self._by_name = {name: self._positions[label] for label, name in self.names.items()}

    def to_json(self) -> dict:
        return {"ids": self.ids, "names": self.names, "names_zh": self.names_zh}

    @classmethod
    def from_json(cls, data: dict) -> LabelSet:
        return cls(list(data["ids"]), dict(data.get("names", {})), dict(data.get("names_zh", {})))


@dataclass
class Example:
    text: str
    label: int | None  # None for unlabelled lines
    id: str | None = None
    keywords: str = ""


@dataclass
class Dataset:
    path: Path
    examples: list[Example]

    @property
    def labelled(self) -> bool:
        return all(e.label is not None for e in self.examples)


def _json_lines(path: Path):
    try:
        handle = path.open(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not a JSON line ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def load_labels(path: Path) -> LabelSet:
    ids: list[str] = []
    names: dict[str, str] = {}
    names_zh: dict[str, str] = {}
    for number, row in _json_lines(path):
        if "label" not in row:
            raise DataError(f"{path}:{number}: a labels file line needs a 'label' field")
        label = str(row["label"]).strip()
        ids.append(label)
        if row.get("label_desc"):
            names[label] = str(row["label_desc"])
        if row.get("label_zh"):
            names_zh[label] = str(row["label_zh"])
    if len(ids) < 2:
        raise DataError(f"{path}: needs at least two labels, found {len(ids)}")
    return LabelSet(ids, names, names_zh)


def labels_from_data(paths: list[Path], label_field: str = "label", text_field: str = "sentence") -> LabelSet:
    """Without a labels file: the sorted set of labels seen in the training data."""
    seen: set[str] = set()
    for path in paths:
        for _, row in _rows(path, text_field, label_field):
            if row.get(label_field) not in (None, ""):
                seen.add(str(row[label_field]).strip())
    if len(seen) < 2:
        raise DataError(f"{', '.join(map(str, paths))}: found {len(seen)} distinct labels; pass a labels file")
    return LabelSet(sorted(seen))


def _rows(path: Path, text_field: str = "sentence", label_field: str = "label"):
    if path.suffix.lower() == ".csv":
        try:
            handle = path.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from None
        with handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or text_field not in reader.fieldnames:
                raise DataError(f"{path}:1: CSV header has no column {text_field!r} (columns: {reader.fieldnames})")
            yield from enumerate(reader, 2)
        return
    yield from _json_lines(path)


def load_dataset(
    path: Path,
    labels: LabelSet | None,
    text_field: str = "sentence",
    label_field: str = "label",
    use_keywords: bool = False,
) -> Dataset:
    examples: list[Example] = []
    for number, row in _rows(path, text_field, label_field):
        where = f"{path}:{number}"
        text = row.get(text_field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: missing or empty text field {text_field!r}")
        keywords = str(row.get("keywords") or "")
        raw_label = row.get(label_field)
        label = None
        if raw_label not in (None, "") and labels is not None:
            label = labels.index(raw_label, where)
        full = text.strip()
        if use_keywords and keywords:
            full = f"{full}[SEP]{keywords.replace(',', ' ')}"
        examples.append(Example(full, label, str(row["id"]) if "id" in row else None, keywords))
    if not examples:
        raise DataError(f"{path}: no examples")
    return Dataset(path, examples)


def find_split(folder: Path, split: str) -> Path | None:
    for name in SPLIT_FILES.get(split, (f"{split}.json",)):
        if (folder / name).is_file():
            return folder / name
    if (folder / f"{split}.json").is_file():
        return folder / f"{split}.json"
    return None


def find_labels(folder: Path) -> Path | None:
    for name in LABEL_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def dedupe_against(train: Dataset, evaluation: list[Dataset]) -> int:
    """Drop training lines whose sentence also appears in an evaluation set; return how many were dropped."""
    held_out = {_sentence(e) for d in evaluation for e in d.examples}
    kept = [e for e in train.examples if _sentence(e) not in held_out]
    dropped = len(train.examples) - len(kept)
    train.examples = kept
    return dropped


def _sentence(example: Example) -> str:
    return example.text.split("[SEP]", 1)[0]
