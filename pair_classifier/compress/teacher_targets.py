"""What the frozen teacher says of every text the student trains on, computed once before
training so an epoch costs only the student's forward and backward.

One pass of the teacher gives each text's sentence vector and, when asked for, the output token
states of chosen blocks (layer-wise distillation) and the query/key/value projections of one
block (relation distillation). The pass runs over every training, augmented and validation
text, so it logs its progress.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext

import numpy as np
import torch

from pair_classifier.compress.relations import (
    captured_projections,
    check_relation_layer,
    stacked_projections,
)
from pair_classifier.config import ConfigError
from pair_classifier.logs import Progress
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.encoder import encoder_layers

log = logging.getLogger(__name__)


@torch.inference_mode()
def vectors_and_token_states(
    teacher: BiEncoder,
    texts: list[str],
    batch_size: int,
    blocks: list[int],
    relation_block: int | None = None,
) -> tuple[np.ndarray, list[torch.Tensor] | None, list[torch.Tensor] | None]:
    """In one pass of the teacher: each text's sentence vector, the output token states of the
    listed blocks, (blocks, tokens, hidden), and the query, key and value projections of
    ``relation_block``, (3, tokens, width); None for what is not asked for. Targets only, so in
    half precision."""
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    vectors = np.zeros((len(texts), teacher.embedding_dim), dtype=np.float32)
    states: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    projections: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    watching = (
        nullcontext({})
        if relation_block is None
        else captured_projections(encoder_layers(teacher.encoder)[relation_block])
    )
    batches = math.ceil(len(texts) / batch_size)
    log.info(
        "teacher pass: %d texts in %d batches of %d (token states of blocks %s, "
        "projections of block %s)",
        len(texts),
        batches,
        batch_size,
        blocks or "none",
        "none" if relation_block is None else relation_block,
    )
    progress = Progress("teacher pass", batches, log)
    with watching as captured:
        for index, batch in teacher.length_sorted_batches(texts, batch_size):
            embedded, hidden = teacher.embed_with_states(
                batch["input_ids"].to(device), batch["attention_mask"].to(device)
            )
            vectors[index] = embedded.float().cpu().numpy()
            chosen = (
                torch.stack([hidden[block + 1] for block in blocks], dim=1).half().cpu()
                if blocks
                else None
            )
            stacked = stacked_projections(captured).half().cpu() if captured else None
            for row, i in enumerate(index):
                tokens = int(batch["attention_mask"][row].sum())
                if chosen is not None:
                    states[i] = chosen[row, :, :tokens].clone()
                if stacked is not None:
                    projections[i] = stacked[:, row, :tokens].clone()
            progress.step()
    teacher.train(was_training)
    log.info("teacher pass: done, %d texts in %.1f s", len(texts), progress.elapsed)
    return vectors, states if blocks else None, projections if relation_block is not None else None


def padded_targets(per_text: list[torch.Tensor], length: int) -> torch.Tensor:
    """Per-text targets (kinds, tokens, width) stacked to (kinds, batch, length, width),
    zero-padded like the batch's tokens."""
    first = per_text[0]
    padded = torch.zeros(first.shape[0], len(per_text), length, first.shape[-1])
    for column, target in enumerate(per_text):
        padded[:, column, : target.shape[1]] = target.float()
    return padded


class TeacherTargets:
    """What the frozen teacher says of every text the student trains on: its sentence vector,
    for layer-wise distillation the token states of the ``hidden_layers`` blocks, and for
    relation distillation the query/key/value projections of block ``relation_layer``."""

    def __init__(
        self,
        teacher: BiEncoder,
        texts: list[str],
        batch_size: int,
        hidden_layers: list[int],
        relation_layer: int | None = None,
    ) -> None:
        blocks = teacher.encoder.config.num_hidden_layers
        if any(not 0 <= block < blocks for block in hidden_layers):
            raise ConfigError(
                f"distill.hidden_layers {hidden_layers}: the teacher's blocks are 0..{blocks - 1}"
            )
        if relation_layer is not None:
            check_relation_layer(relation_layer, blocks)
        unique = list(dict.fromkeys(texts))
        self.row = {text: i for i, text in enumerate(unique)}
        vectors, self.states, self.projections = vectors_and_token_states(
            teacher, unique, batch_size, hidden_layers, relation_layer
        )
        self.vectors = torch.from_numpy(vectors)

    def vectors_of(self, texts: list[str]) -> torch.Tensor:
        """The teacher's precomputed sentence vectors of ``texts``, in their order."""
        return self.vectors[[self.row[text] for text in texts]]

    def states_of(self, texts: list[str], length: int) -> torch.Tensor:
        """(blocks, batch, length, hidden), zero-padded like the batch's tokens."""
        assert self.states is not None
        return padded_targets([self.states[self.row[text]] for text in texts], length)

    def projections_of(self, texts: list[str], length: int) -> torch.Tensor:
        """(3, batch, length, width): query, key and value, zero-padded like the batch."""
        assert self.projections is not None
        return padded_targets([self.projections[self.row[text]] for text in texts], length)
