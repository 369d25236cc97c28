"""python -m train_entry init|finetune|evaluate|pretrain|predict — see `--help` of each."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from train_entry.modeling import PRESET_HELP, PRESETS

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _keywords_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--keywords",
        "--use-keywords",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="append the keywords field to the text (true/false, default: false)",
    )


def _data_args(parser: argparse.ArgumentParser, splits: tuple[str, ...]) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        help="folder with train.json / dev.json / test.json (CLUE) or train_few_all.json / "
        "dev_few_all.json / test_public.json (FewCLUE) and labels.json or label_index2en2zh.json",
    )
    for split in splits:
        group.add_argument(f"--{split}", metavar="FILE", help=f"the {split} file (overrides the one found in --data)")
    group.add_argument("--labels", metavar="FILE", help="labels file (default: found in --data; else inferred)")
    group.add_argument(
        "--text-field", default="sentence", help="JSON key / CSV column of the text (default: %(default)s)"
    )
    group.add_argument(
        "--label-field", default="label", help="JSON key / CSV column of the label (default: %(default)s)"
    )
    _keywords_arg(group)
    group.add_argument("--max-length", type=int, default=64, help="tokens per line after truncation (default: 64)")


def _model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model", metavar="DIR", help="a Hugging Face BERT model folder (config.json, weights, vocab.txt)"
    )
    group.add_argument(
        "--vocab", metavar="FILE", help="vocab.txt for a new model (with --preset), e.g. bert-base-chinese"
    )
    group.add_argument("--preset", choices=sorted(PRESETS), default="mini", help=f"size of a new model: {PRESET_HELP}")


def _train_args(parser: argparse.ArgumentParser, epochs: float, batch: int, lr: float) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--output", required=True, help="output folder (metrics, plots, model/, checkpoints/)")
    group.add_argument(
        "--epochs", type=float, default=epochs, help="passes over the training data (default: %(default)s)"
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=batch,
        help="global batch per optimizer step, split over the processes torchrun starts (default: %(default)s)",
    )
    group.add_argument(
        "--max-device-batch",
        type=int,
        default=None,
        metavar="N",
        help="most lines one device takes at once; gradient accumulation makes up the global batch",
    )
    group.add_argument("--eval-batch-size", type=int, default=128, help="inference batch size (default: %(default)s)")
    group.add_argument("--lr", type=float, default=lr, help="peak learning rate (default: %(default)s)")
    group.add_argument("--warmup-ratio", type=float, default=0.1, help="linear warm-up share of steps (default: 0.1)")
    group.add_argument("--seed", type=int, default=42, help="random seed for data order and initialisation")
    group.add_argument("--logging-steps", type=int, default=20, help="steps between metric lines (default: 20)")
    group.add_argument("--save-steps", type=int, default=200, help="steps between checkpoints (default: 200)")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in OUTPUT/checkpoints (starts fresh when none)",
    )


def _inference_args(parser: argparse.ArgumentParser, file_help: str) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="the model/ folder finetune wrote")
    parser.add_argument("--file", help=file_help)
    parser.add_argument("--output", required=True, help="folder for metrics.json, predictions, plots")
    parser.add_argument("--eval-batch-size", "--batch-size", type=int, default=128, dest="eval_batch_size")
    _data_args(parser, ())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train_entry",
        description="Fine-tune, evaluate, pre-train and predict BERT text classifiers on CLUE TNEWS-style data. "
        "bf16 + TF32 on a GPU when present, fp32 on the CPU.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser(
        "init",
        help="make a new, randomly initialised BERT model folder from a vocabulary",
        description="Make a new BERT model folder (config, weights, vocab) from a vocabulary, "
        "or from the characters of a data file when no vocabulary is at hand.",
    )
    init.add_argument("--output", required=True, help="the model folder to write")
    init.add_argument("--vocab", help="vocab.txt (e.g. bert-base-chinese's)")
    init.add_argument(
        "--vocab-from",
        nargs="+",
        metavar="FILE",
        help="build a character vocabulary from these JSON-lines files instead (sentence + keywords)",
    )
    init.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help=PRESET_HELP)
    init.add_argument("--max-positions", type=int, default=512, help="longest input the model accepts (default: 512)")
    init.add_argument("--seed", type=int, default=42)

    finetune = sub.add_parser(
        "finetune",
        help="fine-tune a classifier; writes metrics, plots, predictions, model",
        description="Fine-tune BERT for sequence classification with transformers' Trainer. "
        "Training lines whose sentence is also in dev/test are dropped and counted.",
    )
    _data_args(finetune, ("train", "dev", "test"))
    _model_args(finetune)
    _train_args(finetune, epochs=3, batch=32, lr=5e-5)

    evaluate = sub.add_parser(
        "evaluate",
        help="accuracy, macro-F1, per-class report and confusion matrix",
        description="Evaluate a fine-tuned model folder on a labelled file.",
    )
    _inference_args(evaluate, "the labelled file to evaluate on (else --data + --split)")
    evaluate.add_argument("--split", default="test", help="which file of --data: test, dev or train (default: test)")

    predict = sub.add_parser(
        "predict",
        help="predict labels; writes predictions.jsonl and the CLUE submission file",
        description="Predict labels for a (usually unlabelled) file; writes predictions.jsonl "
        "and tnews_predict.json in CLUE's submission format.",
    )
    _inference_args(predict, "the file to label (else test.json in --data)")

    pretrain = sub.add_parser(
        "pretrain",
        help="domain-adaptive masked-LM pre-training on unlabelled titles",
        description="Masked-LM pre-training on unlabelled.json + train.json of --data and any "
        "--text-file; sentences of dev/test (and --exclude files) are never trained on.",
    )
    pretrain.add_argument("--data", help="folder with unlabeled.json and/or train.json (dev/test there are excluded)")
    pretrain.add_argument(
        "--text-file",
        dest="text_files",
        action="append",
        default=[],
        metavar="FILE",
        help="more JSON-lines files of titles (repeatable)",
    )
    pretrain.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FILE",
        help="evaluation files whose sentences must not be trained on (repeatable)",
    )
    pretrain.add_argument("--text-field", default="sentence")
    _keywords_arg(pretrain)
    pretrain.add_argument("--max-length", type=int, default=64)
    pretrain.add_argument("--mlm-probability", type=float, default=0.15, help="share of tokens masked (default: 0.15)")
    pretrain.add_argument(
        "--whole-word-mask",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="mask whole words (transformers' word boundaries; a CJK character is its own word)",
    )
    _model_args(pretrain)
    _train_args(pretrain, epochs=3, batch=64, lr=1e-4)
    _mindspore_args(sub)
    return parser


def _mindspore_args(sub) -> None:
    importer = sub.add_parser(
        "import-mindspore",
        help="turn a MindSpore model-zoo BERT checkpoint (.ckpt) into a model folder",
        description="Convert a MindSpore model-zoo BERT .ckpt (pre-training or fine-tuning, optimizer state "
        "included; the 2020 zoo of MindSpore r0.x-r1.1 or the later one, told apart by the file's names) into a "
        "transformers model folder that finetune, evaluate and pretrain read. MindSpore is not needed; optimizer "
        "tensors are skipped without being read; a damaged or crafted file is refused with one line.",
    )
    importer.add_argument("--ckpt", required=True, metavar="FILE", help="the MindSpore checkpoint (.ckpt)")
    importer.add_argument("--vocab", required=True, metavar="FILE", help="the vocab.txt it was trained with")
    shape = importer.add_mutually_exclusive_group()
    shape.add_argument("--config", metavar="FILE", help="bert_config.json (checked against the tensors)")
    shape.add_argument(
        "--preset", choices=sorted(PRESETS), help="a size preset (checked against the tensors; gives the heads)"
    )
    importer.add_argument(
        "--num-heads",
        type=int,
        default=0,
        help="attention heads, which the tensors cannot tell (default, or 0: from --config/--preset, else hidden/64)",
    )
    importer.add_argument(
        "--dtype",
        choices=("float32", "keep"),
        default="float32",
        help="weights in the folder: float32 (default; what training wants) or as stored (fp16 stays fp16)",
    )
    importer.add_argument("--output", required=True, metavar="DIR", help="the model folder to write")

    exporter = sub.add_parser(
        "export-mindspore",
        help="write a model folder back as a MindSpore model-zoo BERT checkpoint (.ckpt)",
        description="Write a model folder's BERT weights as a .ckpt under the MindSpore model zoo's names "
        "(mindspore.load_checkpoint reads it; a classifier goes to <prefix parent>.dense_1 as in BertCLS).",
    )
    exporter.add_argument("--model", required=True, metavar="DIR", help="a model folder (model.safetensors)")
    exporter.add_argument("--output", required=True, metavar="FILE", help="the .ckpt to write")
    exporter.add_argument(
        "--prefix", default="bert.bert.", help="name prefix of BertModel's tensors (default: %(default)s)"
    )
    exporter.add_argument(
        "--names",
        choices=("1.x", "2.x"),
        default="2.x",
        help="model-zoo generation to name the embeddings for: 1.x = MindSpore r0.x-r1.1's zoo (2020, "
        "bert_embedding_postprocessor.embedding_table / .full_position_embeddings), 2.x = r1.2 on, today's "
        "(default: %(default)s)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    from train_entry.data import DataError

    hf_logging.set_verbosity_error()  # the load report of new heads is noise here; our own lines say what happened

    from train_entry import distributed
    from train_entry.launch import DATA_PARALLEL_COMMANDS

    if args.command in DATA_PARALLEL_COMMANDS:
        distributed.setup()  # a no-op with one process; joins torchrun's process group otherwise
    try:
        if args.command == "init":
            result = _init(args)
        elif args.command == "finetune":
            from train_entry.classify import finetune

            result = finetune(args)
        elif args.command == "evaluate":
            from train_entry.classify import evaluate

            result = evaluate(args)
        elif args.command == "predict":
            from train_entry.classify import predict

            result = predict(args)
        elif args.command == "import-mindspore":
            from train_entry.mindspore_convert import import_mindspore

            result = import_mindspore(
                Path(args.ckpt),
                Path(args.vocab),
                Path(args.output),
                Path(args.config) if args.config else None,
                args.preset,
                args.num_heads or None,
                args.dtype,
            )
        elif args.command == "export-mindspore":
            from train_entry.mindspore_convert import export_mindspore

            result = export_mindspore(Path(args.model), Path(args.output), args.prefix, args.names)
        else:
            from train_entry.pretrain import pretrain

            result = pretrain(args)
    except (DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()
    if distributed.is_main():
        summary = {k: v for k, v in result.items() if not isinstance(v, dict | list)}
        print(json.dumps(summary, ensure_ascii=False, indent=1))
    return 0


def _init(args: argparse.Namespace) -> dict:
    from train_entry.data import load_dataset
    from train_entry.modeling import build_char_vocab, init_model

    output = Path(args.output)
    if args.vocab_from:
        texts = []
        for path in args.vocab_from:
            texts += [e.text + e.keywords for e in load_dataset(Path(path), None).examples]
        size = build_char_vocab(texts, output / "vocab.txt")
        print(f"character vocabulary of {size} entries from {len(texts)} lines", flush=True)
        vocab = output / "vocab.txt"
    elif args.vocab:
        vocab = Path(args.vocab)
    else:
        raise FileNotFoundError("pass --vocab vocab.txt or --vocab-from FILE...")
    init_model(vocab, args.preset, output, args.max_positions, args.seed)
    return {"task": "init", "model_dir": str(output), "preset": args.preset}


if __name__ == "__main__":
    sys.exit(main())
