"""A tiny, randomly initialised BERT made on the spot, so tests never download a model."""

import re
from collections.abc import Iterable
from pathlib import Path

from transformers import BertConfig, BertModel, BertTokenizerFast

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
