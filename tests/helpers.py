"""What tests share: configs composed from configs/ exactly as `dvc exp run` composes
params.yaml, small synthetic pairs in MRPC's on-disk format, and a tiny BERT made on the spot
(tests never download a model).

A test trains the recipe the pipeline runs, scaled down only where it says so: every change is
an explicit Hydra override (``"train.epochs=1"``, ``"classifier=linear_svm"``) or a keyword that
replaces one key of the section (``keep_layers=[0], hidden_layers=[]``).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from transformers import BertConfig, BertModel, BertTokenizerFast

from pair_classifier.config import DataConfig, DistillConfig, ModelConfig, section

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
ROOT_CONFIG = "config"  # configs/config.yaml, the root of the composition


@functools.cache
def _composition(overrides: tuple[str, ...]) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = compose(config_name=ROOT_CONFIG, overrides=list(overrides))
    return OmegaConf.to_container(config, resolve=True)


def composed_params(*overrides: str) -> dict[str, Any]:
    """params.yaml as `dvc exp run` writes it, with Hydra ``overrides`` (a fresh copy)."""
    return copy.deepcopy(_composition(tuple(overrides)))


def composed(section_name: str, cls: type[T], /, *overrides: str, **values: Any) -> T:
    """Section ``section_name`` of the composed params as ``cls``: Hydra ``overrides`` first,
    then each keyword replaces that key of the section (a whole value: lists and mappings are
    not merged). Positional-only names, so a section's own ``name`` key can be a keyword."""
    params = composed_params(*overrides)
    params[section_name] = {**params[section_name], **values}
    return section(params, section_name, cls)


MRPC_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"

# Small synthetic "paraphrase" pairs: label 1 when the second text restates the first.
SUBJECTS = [
    "the company",
    "the senator",
    "shares",
    "the court",
    "police",
    "the report",
    "officials",
]
VERBS = ["said", "reported", "announced", "denied", "confirmed", "expected", "rejected"]
OBJECTS = [
    "profits rose",
    "the deal",
    "a new plan",
    "the claims",
    "job cuts",
    "the results",
    "a delay",
]


def synthetic_pairs(count: int, seed: int) -> list[tuple[int, str, str]]:
    """Deterministic (label, text_a, text_b) rows, about two thirds positive like MRPC."""
    rows = []
    for i in range(count):
        k = i * 7 + seed * 13
        subject, verb, obj = SUBJECTS[k % 7], VERBS[(k // 7) % 7], OBJECTS[(k // 49) % 7]
        text_a = f'{subject} {verb} that {obj} on day {i} , "sources" said .'
        positive = i % 3 != 0
        if positive:
            text_b = f"on day {i} , {subject} {verb} that {obj} ."
        else:
            other = SUBJECTS[(k + 3) % 7], VERBS[(k + 2) % 7], OBJECTS[(k + 5) % 7]
            text_b = f"{other[0]} {other[1]} {other[2]} on day {i + 1} ."
        rows.append((int(positive), text_a, text_b))
    return rows


def write_mrpc_file(
    path: Path, rows: list[tuple[int, str, str]], extra_lines: list[str] = ()
) -> Path:
    """A file exactly like MRPC's: UTF-8 BOM, CRLF, tab-separated, quotes inside fields."""
    lines = [MRPC_HEADER]
    lines += [f"{label}\t{100 + i}\t{200 + i}\t{a}\t{b}" for i, (label, a, b) in enumerate(rows)]
    lines += list(extra_lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    return path


def write_mrpc_dataset(directory: Path, sizes: dict[str, int]) -> Path:
    """train/val/test files with the MRPC file names, disjoint pairs per split."""
    names = {"train": "msr-para-train.tsv", "val": "msr-para-val.tsv", "test": "msr-para-test.tsv"}
    offset = 0
    for split, size in sizes.items():
        rows = synthetic_pairs(size + offset, seed=1)[offset:]
        write_mrpc_file(directory / names[split], rows)
        offset += size
    return directory


def pairs_frame(count: int, seed: int) -> pd.DataFrame:
    """Synthetic pairs as a prepared split looks (text_a, text_b, label)."""
    return pd.DataFrame(synthetic_pairs(count, seed), columns=["label", "text_a", "text_b"])


def word_count(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}


def make_tiny_bert(directory: Path, texts: Iterable[str], seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT and a word-level vocabulary built from ``texts``."""
    import torch

    words = sorted({word for text in texts for word in re.findall(r"\w+|[^\w\s]", text.lower())})
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL_TOKENS + words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(SPECIAL_TOKENS) + len(words), **TINY_BERT))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def different_or_same(symmetric: bool = False) -> DataConfig:
    """The data config with two classes (different/same), for models built on synthetic pairs."""
    return composed(
        "data",
        DataConfig,
        labels={"0": "different", "1": "same"},
        positive_label="same",
        symmetric=symmetric,
    )


def tiny_model(tiny_bert_dir: Path, **values: object) -> ModelConfig:
    """The model config on the tiny BERT, with inputs cut to 32 tokens (its vocabulary is
    the synthetic pairs' words; they are shorter than that)."""
    return composed(
        "model", ModelConfig, name="tiny", pretrained=str(tiny_bert_dir), max_length=32, **values
    )


def tiny_distill(*overrides: str, **values: object) -> DistillConfig:
    """The distill recipe for the tiny BERT: its 2 heads and 64 FFN channels per block kept
    whole (the recipe prunes MiniLM's 12 heads to 8 and 1536 channels to 768) and no layer-wise
    targets unless a test names them (the recipe's [0, 2, 5] are MiniLM's blocks)."""
    shape = {"heads_per_layer": 0, "ffn_channels_per_layer": 0, "hidden_layers": []}
    return composed("distill", DistillConfig, *overrides, **(shape | values))
