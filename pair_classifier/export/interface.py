"""The export folder's contract: graph inputs and outputs, file names, the model card."""

from pathlib import Path
from typing import Any

from pair_classifier.errors import ArtifactError, PairClassifierError, reading_artifact
from pair_classifier.io_utils import read_json

SCORING_INPUTS = ("input_ids_a", "attention_mask_a", "input_ids_b", "attention_mask_b")
SCORING_OUTPUTS = ("scores", "probabilities")


class ExportError(PairClassifierError):
    """A model cannot be exported, or its export disagrees with the original."""


MODEL_CARD = "model.json"
TOKENIZER_SUBDIR = "tokenizer"
ONNX_SUFFIX = ".onnx"
OPTIMIZED = "optimized"


def variant_file(model: str, variant: str | None = None) -> str:
    """``student.onnx``, ``student.optimized.onnx``, ``student.int8_static.onnx`` ..."""
    return f"{model}.{variant}{ONNX_SUFFIX}" if variant else f"{model}{ONNX_SUFFIX}"


# What every reader of the card relies on, and the type it must have.
MODEL_CARD_FIELDS = {"class_names": list, "positive_label": str, "max_length": int}


def read_model_card(graph: Path) -> dict[str, Any]:
    """The model card beside an exported graph (class names, max length, inputs, outputs)."""
    card_file = graph.parent / MODEL_CARD
    if not card_file.is_file():
        raise ArtifactError(f"{card_file}: not found; {graph} is not part of an export folder")
    with reading_artifact(card_file, "the export's model card (JSON)"):
        card = read_json(card_file)
    for field, kind in MODEL_CARD_FIELDS.items():
        if not isinstance(card, dict) or not isinstance(card.get(field), kind):
            raise ArtifactError(
                f"{card_file}: field {field!r} missing or not a {kind.__name__}; "
                f"the card needs {sorted(MODEL_CARD_FIELDS)}"
            )
    return card
