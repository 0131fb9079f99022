"""The served encoder's sentence vectors, read out of the exported ONNX graph itself.

The graph answers probabilities, not vectors, but it computes each text's mean-pooled vector
(u, v) on the way: the pair features ``[u, v, |u-v|, u*v]`` are one ``Concat`` whose third input
comes from an ``Abs`` and fourth from a ``Mul``. Its first two inputs are added to the graph's
outputs, in memory, and the same ONNX Runtime session gives vectors and probabilities in one
pass: the vectors of the encoder that is served, without PyTorch (the export's own runtime).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pair_classifier.constants import TEXT_A, TEXT_B
from pair_classifier.errors import ArtifactError, reading_artifact
from pair_classifier.export.interface import SCORING_OUTPUTS, TOKENIZER_SUBDIR, read_model_card
from pair_classifier.export.runtime import length_order
from pair_classifier.export.tokenization import PairTokenizer

logger = logging.getLogger(__name__)

FEATURE_PARTS = 4  # [u, v, |u-v|, u*v]
DIFFERENCE_OP, PRODUCT_OP = "Abs", "Mul"
PROGRESS_EVERY_BATCHES = 20


def vector_outputs(model: object) -> tuple[str, str]:
    """The names of the tensors that hold u and v in the graph (an ``onnx.ModelProto``)."""
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    for node in model.graph.node:
        if node.op_type == "Concat" and len(node.input) == FEATURE_PARTS:
            kinds = [producers.get(name) for name in node.input]
            if kinds[2:] == [DIFFERENCE_OP, PRODUCT_OP]:
                return node.input[0], node.input[1]
    raise ArtifactError(
        "the graph has no pair-feature Concat([u, v, |u-v|, u*v]); give the fp32 export "
        "(artifacts/onnx/student.onnx) for the sentence vectors"
    )


class EncoderProbe:
    """A scoring graph that also answers each text's sentence vector."""

    def __init__(self, graph: Path, batch_size: int, threads: int) -> None:
        import onnx
        import onnxruntime as ort

        with reading_artifact(graph, "an ONNX graph"):
            model = onnx.load(str(graph))
        self.names = vector_outputs(model)
        for name in self.names:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
        card = read_model_card(graph)
        self.class_names: list[str] = card["class_names"]
        self.tokenize = PairTokenizer.load(graph.parent / TOKENIZER_SUBDIR, card["max_length"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.batch_size = batch_size
        logger.debug("sentence vectors from %s (%s, %s)", graph, *self.names)

    def run(self, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, probabilities) of every pair in input order, in length-sorted batches."""
        ids_a = self.tokenize.token_ids(pairs[TEXT_A])
        ids_b = self.tokenize.token_ids(pairs[TEXT_B])
        order = length_order(np.array(list(map(len, ids_a))), np.array(list(map(len, ids_b))))
        outputs = [SCORING_OUTPUTS[1], *self.names]
        parts: list[list[np.ndarray]] = [[], [], []]
        for number, start in enumerate(range(0, len(order), self.batch_size), start=1):
            rows = order[start : start + self.batch_size]
            inputs = self.tokenize.inputs([ids_a[i] for i in rows], [ids_b[i] for i in rows])
            probabilities, u, v = self.session.run(outputs, inputs)
            for part, values in zip(parts, (u, v, probabilities)):
                part.append(np.asarray(values, dtype=np.float32))
            if number % PROGRESS_EVERY_BATCHES == 0:
                logger.info("encoded %d of %d pairs", start + len(rows), len(order))
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        u, v, probabilities = (np.concatenate(part)[back] for part in parts)
        return u, v, probabilities
