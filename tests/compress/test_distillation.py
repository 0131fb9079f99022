"""Distillation: augmented copies, the loss that skips them, the loaders, the cross-encoder."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import composed, different_or_same, pairs_frame, tiny_distill
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import data as lightning_data
from torch.utils.data import RandomSampler
from transformers import BertTokenizerFast
from transformers.trainer_pt_utils import LengthGroupedSampler

from pair_classifier import logs
from pair_classifier.compress import teacher_targets
from pair_classifier.compress.augmentation import (
    UNLABELLED,
    augmented_pairs,
    drop_words,
    replace_words,
    word_neighbours,
)
from pair_classifier.compress.cross_encoder import CrossEncoder, CrossEncoderModule, PairLogits
from pair_classifier.compress.distillation import (
    DistillationModule,
    check_distill_config,
    check_relation_config,
    labelled_cross_entropy,
)
from pair_classifier.compress.distillation_data import distill_loaders, replacement_neighbours
from pair_classifier.compress.relations import PROJECTIONS, log_relations, relation_kl
from pair_classifier.compress.student import distill_student, make_student
from pair_classifier.compress.teacher_targets import TeacherTargets
from pair_classifier.config import (
    ClassifierConfig,
    ConfigError,
    DistillConfig,
    ModelConfig,
    TrainConfig,
)
from pair_classifier.constants import BI_ENCODER_SUBDIR, LABEL, TEXT_A, TEXT_B
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.encoder import encoder_layers, load_encoder, load_tokenizer

PAIRS = pd.DataFrame(
    {
        TEXT_A: ["the company said profits rose sharply", "shares fell", "word"],
        TEXT_B: ["profits rose sharply the company said", "stocks dropped today", "other"],
        LABEL: [1, 0, 1],
    }
)


def test_drop_words_keeps_order_and_at_least_one_word() -> None:
    rng = np.random.default_rng(0)
    text = "one two three four five six"
    for _ in range(50):
        kept = drop_words(text, 0.5, rng).split()
        assert 1 <= len(kept) <= 6
        assert kept == [word for word in text.split() if word in kept]
    assert drop_words("single", 1.0, rng) == "single"
    assert len(drop_words(text, 1.0, rng).split()) == 1


def test_augmented_pairs_are_unlabelled_seeded_copies() -> None:
    augmented = augmented_pairs(PAIRS, copies=2, word_dropout=0.3, seed=1)
    assert len(augmented) == 2 * len(PAIRS)
    assert (augmented[LABEL] == UNLABELLED).all()
    assert augmented.equals(augmented_pairs(PAIRS, copies=2, word_dropout=0.3, seed=1))
    assert not augmented.equals(augmented_pairs(PAIRS, copies=2, word_dropout=0.3, seed=2))
    assert augmented_pairs(PAIRS, copies=0, word_dropout=0.3, seed=1).empty


NEIGHBOUR_VECTORS = {
    "profits": [1.0, 0.0, 0.0],
    "earnings": [0.9, 0.1, 0.0],
    "[CLS]": [1.0, 0.0, 0.0],  # as close as can be, but not a word
    "##s": [1.0, 0.01, 0.0],  # a word piece, not a whole word
    "shares": [0.0, 1.0, 0.0],
    "stocks": [0.0, 0.9, 0.1],
    "of": [0.0, 0.0, 1.0],
}


def test_word_neighbours_are_the_nearest_whole_words_in_the_embeddings(tmp_path: Path) -> None:
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "of", "profits", "earnings"]
    vocabulary += ["shares", "stocks", "##s", "42"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=True)
    other = [0.0, 0.0, -1.0]
    embeddings = torch.tensor([NEIGHBOUR_VECTORS.get(piece, other) for piece in vocabulary])
    words = ["profits", "shares", "of", "42", "unheard", "profits"]
    neighbours = word_neighbours(words, tokenizer, embeddings, count=1)
    # "of" is too short to replace, "42" is not a word, "unheard" is not one piece
    assert neighbours == {"profits": ["earnings"], "shares": ["stocks"]}
    # More neighbours asked for than there are other whole words: only those, no special token.
    many = word_neighbours(["profits"], tokenizer, embeddings, count=50)["profits"]
    assert many[0] == "earnings"
    assert sorted(many) == ["earnings", "of", "shares", "stocks"]


def test_replace_words_replaces_only_words_with_neighbours() -> None:
    neighbours = {"profits": ["earnings", "gains"], "shares": ["stocks"]}
    rng = np.random.default_rng(0)
    for _ in range(10):
        replaced = replace_words("Profits of shares", neighbours, 1.0, rng).split()
        assert replaced[0] in {"earnings", "gains"} and replaced[1:] == ["of", "stocks"]
    assert replace_words("Profits of shares", neighbours, 0.0, rng) == "Profits of shares"


def test_augmented_pairs_with_replacement_are_seeded() -> None:
    neighbours = {"profits": ["earnings"], "shares": ["stocks"], "company": ["firm"]}
    augmented = augmented_pairs(PAIRS, 2, 0.0, 1, neighbours, replace_probability=1.0)
    assert augmented[TEXT_A].iloc[0] == "the firm said earnings rose sharply"
    assert augmented[TEXT_B].iloc[1] == "stocks dropped today"
    assert augmented.equals(augmented_pairs(PAIRS, 2, 0.0, 1, neighbours, 1.0))
    assert (augmented[LABEL] == UNLABELLED).all()
    untouched = augmented_pairs(PAIRS, 1, 0.0, 1, neighbours, replace_probability=0.0)
    assert untouched[TEXT_A].tolist() == PAIRS[TEXT_A].tolist()


def test_replacement_neighbours_come_from_the_teacher_only_when_asked(
    tiny_model_dir: Path,
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    train = pairs_frame(20, 1)
    asked = tiny_distill(keep_layers=[0], augment_copies=1, augment_replace_probability=0.5)
    neighbours = replacement_neighbours(teacher, train, asked)
    assert neighbours
    train_words = {w.lower() for t in pd.concat([train[TEXT_A], train[TEXT_B]]) for w in t.split()}
    assert set(neighbours) <= train_words
    assert all(len(candidates) == asked.augment_neighbours for candidates in neighbours.values())
    assert all(
        candidate.isalpha() and candidate != word
        for word, candidates in neighbours.items()
        for candidate in candidates
    )
    off = tiny_distill(keep_layers=[0], augment_copies=1, augment_replace_probability=0.0)
    assert replacement_neighbours(teacher, train, off) is None


@pytest.mark.parametrize(
    "field, value", [("augment_replace_probability", 1.5), ("augment_word_dropout", -0.1)]
)
def test_augmentation_probabilities_are_checked(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"distill.{field}: expected a probability"):
        tiny_distill(keep_layers=[0], **{field: value})


def test_cross_entropy_skips_unlabelled_rows() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, UNLABELLED, 1])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    torch.testing.assert_close(labelled_cross_entropy(logits, labels), expected)
    none = labelled_cross_entropy(logits, torch.full((3,), UNLABELLED))
    assert none.item() == 0.0
    none.backward()
    assert logits.grad is not None and not logits.grad.any()


def test_loaders_group_training_batches_by_length_but_not_importance_batches(
    tiny_model_dir: Path,
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    config = tiny_distill(keep_layers=[0], batch_size=8, augment_copies=1)
    train, val = pairs_frame(40, 1), pairs_frame(16, 2)
    training, validation, labelled = distill_loaders(
        teacher, train, val, config, swap_probability=0.5, group_by_length=True, seed=0
    )
    assert isinstance(training.sampler, LengthGroupedSampler)
    assert len(training.dataset) == 2 * len(train)  # one augmented copy
    assert isinstance(labelled.sampler, RandomSampler)  # plain shuffle: all lengths
    assert len(labelled.dataset) == len(train)
    batch = next(iter(validation))
    assert batch["teacher_u"].shape == (8, teacher.embedding_dim)
    assert torch.equal(batch["labels"], torch.tensor(val[LABEL].to_numpy()[:8]))


def _cross_encoder(model_config: ModelConfig) -> CrossEncoder:
    torch.manual_seed(0)
    return CrossEncoder(load_encoder(model_config), load_tokenizer(model_config), 2, 64, 0.1)


def test_cross_encoder_reads_both_texts_as_one_input(tiny_model_config: ModelConfig) -> None:
    model = _cross_encoder(tiny_model_config)
    inputs = model.tokenize(["shares fell", "the court said"], ["stocks dropped", "police said"])
    sep = model.tokenizer.sep_token_id
    assert ((inputs["input_ids"] == sep).sum(dim=1) == 2).all()  # [CLS] a [SEP] b [SEP]
    logits = model.logits(PAIRS[TEXT_A].tolist(), PAIRS[TEXT_B].tolist(), batch_size=2)
    assert logits.shape == (len(PAIRS), 2)
    one_by_one = [model.logits([a], [b], 1)[0] for a, b in zip(PAIRS[TEXT_A], PAIRS[TEXT_B])]
    np.testing.assert_allclose(logits, np.stack(one_by_one), atol=1e-5)  # order kept


def test_pair_logits_of_a_symmetric_task_ignore_text_order(
    tiny_model_config: ModelConfig,
) -> None:
    model = _cross_encoder(tiny_model_config)
    symmetric = PairLogits(model, PAIRS, batch_size=2, symmetric=True)
    a, b = PAIRS[TEXT_A].tolist(), PAIRS[TEXT_B].tolist()
    torch.testing.assert_close(symmetric(a, b), symmetric(b, a))
    ordered = PairLogits(model, PAIRS, batch_size=2, symmetric=False)
    np.testing.assert_allclose(ordered(a, b).numpy(), model.logits(a, b, 2), atol=1e-5)
    with pytest.raises(KeyError):
        ordered(b, a)


@pytest.mark.slow  # a whole distillation, cross-encoder teacher trained first
def test_student_distilled_from_a_cross_encoder(
    tmp_path: Path, tiny_model_dir: Path, tiny_model_config: ModelConfig
) -> None:
    for split, (count, seed) in {"train": (48, 1), "val": (16, 2)}.items():
        pairs_frame(count, seed).to_parquet(tmp_path / f"{split}.parquet")
    config = tiny_distill(
        "distill.cross_encoder.epochs=1",
        "distill.cross_encoder.batch_size=8",
        "distill.cross_encoder.max_length=64",
        keep_layers=[0],
        hidden_layers=[0],  # per-block targets: a batch whose tensors differ in their first axis
        teacher="cross_encoder",
        epochs=1,
        batch_size=8,
        importance_batches=2,
    )
    train = composed(
        "train", TrainConfig, epochs=1, batch_size=8, lr=1e-4, head_lr=1e-3, log_every_n_steps=1
    )
    lightning_data.warning_cache.clear()  # it drops a message it has given once in this process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        student, classifier, metrics = distill_student(
            BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR),
            tmp_path,
            tmp_path / "checkpoints",
            config,
            train,
            composed("classifier", ClassifierConfig, c_grid=[0.1]),
            different_or_same(symmetric=True),
            tiny_model_config,
            seed=0,
            loggers=[CSVLogger(tmp_path / "logs")],
            cross_encoder_loggers=[CSVLogger(tmp_path / "cross_logs")],
        )
    # Both modules tell Lightning their batch size: epoch means of the losses weigh each batch by
    # its pairs, and the user's log carries no "ambiguous collection" warning.
    assert not [w for w in caught if "ambiguous collection" in str(w.message)]
    assert metrics["cross_encoder"]["epochs"] == 1
    assert 0.0 <= metrics["cross_encoder"]["best_cross_val_acc"] <= 1.0
    assert (tmp_path / "checkpoints/cross_encoder/best.ckpt").is_file()
    assert len(encoder_layers(student.encoder)) == 1
    assert classifier.report["selected"].startswith("C0.1_")  # the one C the test asked for


def test_kl_follows_the_cross_encoder_logits_when_given(
    tiny_model_dir: Path, tiny_model_config: ModelConfig
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    config = tiny_distill(keep_layers=[0], batch_size=4)
    _, validation, _ = distill_loaders(
        teacher,
        pairs_frame(8, 1),
        pairs_frame(4, 2),
        config,
        swap_probability=0.5,
        group_by_length=False,
        seed=0,
        cross_encoder=_cross_encoder(tiny_model_config),
        symmetric=True,
    )
    batch = next(iter(validation))
    assert batch["teacher_logits"].shape == (4, 2)
    module = DistillationModule(make_student(teacher, config, []), teacher.head, config)
    kl = module._losses(batch)[0]["kl"]
    confident = batch | {"teacher_logits": torch.tensor([[9.0, -9.0]]).repeat(4, 1)}
    assert not torch.isclose(module._losses(confident)[0]["kl"], kl)
    without = {k: v for k, v in batch.items() if k != "teacher_logits"}  # the bi-encoder's head
    assert not torch.isclose(module._losses(without)[0]["kl"], kl)


def test_teacher_token_states_are_each_texts_own_block_outputs(tiny_model_dir: Path) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    texts = ["shares fell", "the company said profits rose sharply", "word"]
    targets = TeacherTargets(teacher, texts, batch_size=2, hidden_layers=[1, 0])
    vectors_only = TeacherTargets(teacher, texts, batch_size=2, hidden_layers=[])
    assert vectors_only.states is None
    torch.testing.assert_close(targets.vectors, vectors_only.vectors)  # the same pass
    for text in texts:  # batched with others, padded: still the text's own states
        alone = teacher.tokenize([text])
        _, hidden = teacher.embed_with_states(alone["input_ids"], alone["attention_mask"])
        expected = torch.stack([hidden[2][0], hidden[1][0]])
        torch.testing.assert_close(
            targets.states[targets.row[text]].float(), expected, atol=2e-3, rtol=0
        )
    padded = targets.states_of(["word", "shares fell"], length=9)
    assert padded.shape == (2, 2, 9, teacher.embedding_dim)
    word_tokens = targets.states[targets.row["word"]].shape[1]
    assert not padded[:, 0, word_tokens:].any()  # zero where the batch pads


def test_the_teacher_pass_gives_encode_s_vectors_and_logs_its_progress(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    texts = ["shares fell", "the company said profits rose sharply", "word"]
    monkeypatch.setattr(logs, "PROGRESS_EVERY_S", 0.0)  # a line after every batch
    with caplog.at_level(logging.INFO, logger=teacher_targets.__name__):
        targets = TeacherTargets(teacher, texts + texts[:1], batch_size=2, hidden_layers=[])
    # One pass whatever is asked for: without token states it gives exactly encode's vectors.
    assert torch.equal(targets.vectors, torch.from_numpy(teacher.encode(texts, 2)))
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("teacher pass: 3 texts in 2 batches of 2")
    assert messages[1:3] == ["teacher pass: 2 batches", messages[2]]
    assert messages[2].startswith("teacher pass: 1 of 2 batches (50%)")
    assert messages[-1].startswith("teacher pass: done, 3 texts in ")
    assert len(messages) == 4


def _decay_groups(module: object, parts: tuple[torch.nn.Module, ...]) -> list[tuple[set, float]]:
    """(parameter names, weight decay) of each optimiser group, names qualified by part."""
    module.trainer = SimpleNamespace(estimated_stepping_batches=10)
    name_of = {
        id(p): f"{i}.{n}" for i, part in enumerate(parts) for n, p in part.named_parameters()
    }
    groups = module.configure_optimizers()["optimizer"].param_groups
    return [({name_of[id(p)] for p in group["params"]}, group["weight_decay"]) for group in groups]


@pytest.mark.parametrize("trained", ["student", "cross_encoder"])
def test_student_and_cross_encoder_do_not_decay_biases_and_layer_norm_weights(
    trained: str, tiny_model_dir: Path, tiny_model_config: ModelConfig
) -> None:
    config = tiny_distill(keep_layers=[0])
    if trained == "student":
        teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
        model = make_student(teacher, config, [])
        module = DistillationModule(model, teacher.head, config)
    else:
        model = _cross_encoder(tiny_model_config)
        module = CrossEncoderModule(model, config.cross_encoder)
        config = config.cross_encoder
    assert config.weight_decay > 0
    groups = _decay_groups(module, (model.encoder, model.head))
    assert [decay for _, decay in groups] == [config.weight_decay, 0.0] * 2
    exempt = groups[1][0] | groups[3][0]
    assert exempt and all(n.endswith(("bias", "LayerNorm.weight")) for n in exempt)
    assert "0.embeddings.LayerNorm.weight" in exempt
    assert any(name.startswith("1.") for name in exempt)  # the head's bias
    assert all(not n.endswith(("bias", "LayerNorm.weight")) for n in groups[0][0] | groups[2][0])


def test_layer_wise_loss_is_zero_for_the_teacher_itself_and_trains_the_blocks(
    tiny_model_dir: Path,
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)

    def batch_of(config: DistillConfig) -> dict[str, torch.Tensor]:
        loaders = distill_loaders(
            teacher, pairs_frame(8, 1), pairs_frame(4, 2), config, 0.0, False, 0
        )
        return next(iter(loaders[1]))  # validation: unshuffled

    same = tiny_distill(keep_layers=[0, 1], hidden_layers=[0, 1], batch_size=4)
    student = make_student(teacher, same, []).eval()  # dropout off: the teacher's own outputs
    losses, _ = DistillationModule(student, teacher.head, same)._losses(batch_of(same))
    own = losses["hidden"].item()  # only the half-precision rounding of the targets
    crossed = tiny_distill(keep_layers=[0, 1], hidden_layers=[1, 0], batch_size=4)
    losses, _ = DistillationModule(student, teacher.head, crossed)._losses(batch_of(crossed))
    assert own < 1e-6 and losses["hidden"].item() > 100 * own
    losses["loss"].backward()
    block = encoder_layers(student.encoder)[0]
    assert block.attention.self.query.weight.grad.abs().sum() > 0
    without = tiny_distill(keep_layers=[0, 1], batch_size=4)
    assert (
        "hidden"
        not in DistillationModule(student, teacher.head, without)._losses(batch_of(without))[0]
    )


def test_layer_wise_targets_must_name_one_teacher_block_per_student_block(
    tiny_model_dir: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"distill.hidden_layers: one teacher block per"):
        tiny_distill(keep_layers=[0, 1], hidden_layers=[1])
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    with pytest.raises(ConfigError, match=r"hidden_layers \[0, 2\]: the teacher's blocks are 0..1"):
        TeacherTargets(teacher, ["a text"], 2, hidden_layers=[0, 2])


def test_relations_ignore_padding_and_the_projection_width() -> None:
    torch.manual_seed(0)
    projections = torch.randn(3, 2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    relations = log_relations(projections, mask, heads=2).exp()
    assert relations.shape == (3, 2, 2, 5, 5)
    torch.testing.assert_close(relations.sum(-1), torch.ones(3, 2, 2, 5))
    assert not relations[:, 0, :, :, 3:].any()  # no weight on padded keys
    changed_padding = projections.clone()
    changed_padding[:, 0, 3:] = 100.0
    torch.testing.assert_close(
        relation_kl(changed_padding, projections, mask, heads=2), torch.tensor(0.0)
    )
    wider = torch.cat([projections, -projections], dim=-1)  # widths may differ: tokens x tokens
    assert relation_kl(projections, projections, mask, heads=2).item() == 0.0
    assert relation_kl(projections, wider, mask, heads=2).item() > 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision leaves them in fp32
        assert log_relations(projections.bfloat16(), mask, heads=2).dtype == torch.float32
    with pytest.raises(ValueError, match="relation heads 3 do not divide the projection width 8"):
        log_relations(projections, mask, heads=3)


def test_relation_loss_is_zero_for_the_teacher_itself_and_trains_the_last_block(
    tiny_model_dir: Path,
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    blocks = teacher.encoder.config.num_hidden_layers

    def losses_of(config: DistillConfig, student: BiEncoder) -> dict[str, torch.Tensor]:
        loaders = distill_loaders(
            teacher, pairs_frame(8, 1), pairs_frame(4, 2), config, 0.0, False, 0
        )
        batch = next(iter(loaders[1]))  # validation: unshuffled
        return DistillationModule(student, teacher.head, config)._losses(batch)[0]

    same = tiny_distill(keep_layers=list(range(blocks)), relation_weight=1.0, relation_heads=2)
    student = make_student(teacher, same, []).eval()  # dropout off: the teacher's own outputs
    own = losses_of(same, student)["relation"].item()  # the half-precision targets only
    earlier = dataclasses.replace(same, relation_layer=0)  # the student's last is block 1
    losses = losses_of(earlier, student)
    assert own < 1e-5 and losses["relation"].item() > 100 * own
    losses["relation"].backward()  # this term alone reaches the projections
    last = encoder_layers(student.encoder)[-1].attention.self
    assert all(getattr(last, name).weight.grad.abs().sum() > 0 for name in PROJECTIONS)
    assert "relation" not in losses_of(dataclasses.replace(same, relation_weight=0.0), student)


def test_relation_settings_are_checked_before_anything_runs(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    width = encoder_layers(teacher.encoder)[-1].attention.self.query.out_features  # 2 heads
    on = tiny_distill(keep_layers=[0, 1], relation_weight=1.0, relation_heads=2)
    check_relation_config(teacher, dataclasses.replace(on, relation_layer=-2))  # block 0
    with pytest.raises(
        ConfigError, match=rf"relation_heads 5 must divide .* teacher's .*\({width}\)"
    ):
        check_relation_config(teacher, dataclasses.replace(on, relation_heads=5))
    one_head = dataclasses.replace(on, heads_per_layer=1, relation_heads=width)
    with pytest.raises(
        ConfigError, match=rf"relation_heads {width} must divide .* student's .*\({width // 2}\)"
    ):
        check_relation_config(teacher, one_head)
    for layer in (2, -3):
        with pytest.raises(
            ConfigError, match=rf"relation_layer {layer}: the teacher's blocks are 0..1 \(or -2..-1"
        ):
            check_relation_config(teacher, dataclasses.replace(on, relation_layer=layer))
    check_relation_config(teacher, dataclasses.replace(one_head, relation_weight=0.0))  # off
    with pytest.raises(ConfigError, match="student's"):  # before it reads any data
        distill_student(
            teacher,
            tmp_path / "missing",
            tmp_path,
            one_head,
            composed("train", TrainConfig, epochs=1, batch_size=4, lr=1e-4, head_lr=1e-3),
            composed("classifier", ClassifierConfig),
            different_or_same(),
            composed("model", ModelConfig, name="tiny", pretrained="x"),
            0,
            [],
            [],
        )
    with pytest.raises(ConfigError, match=r"distill.relation_heads: expected 1 or more, got 0"):
        tiny_distill(keep_layers=[0], relation_heads=0)
    with pytest.raises(ConfigError, match=r"distill.relation_weight: expected 0 \(off\) or more"):
        tiny_distill(keep_layers=[0], relation_weight=-1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"keep_layers": [0, 2]},
            r"distill.keep_layers: \[2\] not among the teacher's blocks 0..1",
        ),
        ({"hidden_layers": [0, 5]}, r"distill.hidden_layers: \[5\] not among the teacher's"),
        ({"heads_per_layer": 3}, r"distill.heads_per_layer: expected 0 \(keep all\) to 2 "),
        ({"ffn_channels_per_layer": 10_000}, r"distill.ffn_channels_per_layer: expected 0 "),
    ],
)
def test_the_student_s_shape_is_checked_against_the_teacher_before_anything_runs(
    tiny_model_dir: Path, change: dict, message: str
) -> None:
    teacher = BiEncoder.load(tiny_model_dir / BI_ENCODER_SUBDIR)
    check_distill_config(teacher, tiny_distill(keep_layers=[0, 1], hidden_layers=[0, 1]))
    config = tiny_distill(**({"keep_layers": [0, 1], "hidden_layers": [0, 1]} | change))
    with pytest.raises(ConfigError, match=message):
        check_distill_config(teacher, config)
