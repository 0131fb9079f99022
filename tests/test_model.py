"""Pooling, pair features, the bi-encoder and its Lightning training."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import pairs_frame, synthetic_pairs
from lightning.pytorch.callbacks import ModelCheckpoint

from pair_classifier.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from pair_classifier.errors import ArtifactError
from pair_classifier.model.bi_encoder import BiEncoder
from pair_classifier.model.datamodule import PairDataset, train_sampler
from pair_classifier.model.encoder import (
    encoder_layers,
    freeze_bottom,
    load_encoder,
    load_tokenizer,
)
from pair_classifier.model.features import pair_features, pair_features_numpy
from pair_classifier.model.lightning_module import BiEncoderModule
from pair_classifier.model.pooling import mean_pooling
from pair_classifier.training import (
    TrainingDivergedError,
    build_bi_encoder,
    finite_or_null,
    load_best_weights,
)


def test_mean_pooling_ignores_padding() -> None:
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pooling(tokens, mask), torch.tensor([[2.0, 3.0]]))


def test_pair_features_layout_and_numpy_twin() -> None:
    u = torch.tensor([[1.0, -2.0]])
    v = torch.tensor([[3.0, 5.0]])
    expected = torch.tensor([[1.0, -2.0, 3.0, 5.0, 2.0, 7.0, 3.0, -10.0]])
    assert torch.equal(pair_features(u, v), expected)
    assert np.array_equal(pair_features_numpy(u.numpy(), v.numpy()), expected.numpy())


@pytest.fixture
def bi_encoder(tiny_model_config: ModelConfig, mrpc_config: DataConfig) -> BiEncoder:
    torch.manual_seed(0)
    return build_bi_encoder(tiny_model_config, mrpc_config).eval()


def test_bi_encoder_shapes(bi_encoder: BiEncoder) -> None:
    a = bi_encoder.tokenize(["the court said", "police denied the claims today"])
    b = bi_encoder.tokenize(["shares", "the report"])
    logits, u, v = bi_encoder(
        a["input_ids"], a["attention_mask"], b["input_ids"], b["attention_mask"]
    )
    assert logits.shape == (2, 2)
    assert u.shape == v.shape == (2, bi_encoder.embedding_dim)
    assert a["input_ids"].shape[1] == 7  # padded to this batch's longest text, not max_length


def test_encode_is_independent_of_batch_and_order(bi_encoder: BiEncoder) -> None:
    texts = ["the court said", "police denied the claims on day 3 today", "shares"]
    together = bi_encoder.encode(texts, batch_size=3)
    alone = np.stack([bi_encoder.encode([text], batch_size=1)[0] for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_save_and_load_round_trip(bi_encoder: BiEncoder, tmp_path: Path) -> None:
    bi_encoder.save(tmp_path / "model")
    loaded = BiEncoder.load(tmp_path / "model")
    texts = ["the senator confirmed the deal", "officials rejected a delay"]
    np.testing.assert_allclose(loaded.encode(texts, 2), bi_encoder.encode(texts, 2), atol=1e-6)
    features = torch.randn(1, 4 * bi_encoder.embedding_dim)
    assert torch.allclose(loaded.head(features), bi_encoder.head(features))
    assert loaded.spec == bi_encoder.spec


def test_saved_tokenizer_files_do_not_depend_on_offline_mode(
    tiny_model_config: ModelConfig,
    mrpc_config: DataConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model built or reloaded offline (HF_HUB_OFFLINE, the team's cache) or online saves the
    same tokenizer files: the student is saved from a loaded teacher, and DVC hashes both."""
    offline = "transformers.tokenization_utils_base.is_offline_mode"  # where HF_HUB_OFFLINE is read
    for mode in (True, False):
        monkeypatch.setattr(offline, lambda mode=mode: mode)
        build_bi_encoder(tiny_model_config, mrpc_config).save(tmp_path / f"built_offline_{mode}")
    reloaded = BiEncoder.load(tmp_path / "built_offline_True")
    reloaded.save(tmp_path / "reloaded_online")
    reloaded.tokenizer.save_pretrained(tmp_path / "exported" / "encoder")  # as the export does
    reference = tmp_path / "built_offline_True" / "encoder"
    tokenizer_files = sorted(reference.glob("*token*"))
    assert tokenizer_files
    for other in ("built_offline_False", "reloaded_online", "exported"):
        for path in tokenizer_files:
            assert (tmp_path / other / "encoder" / path.name).read_bytes() == path.read_bytes()


def test_load_rejects_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"not a saved bi-encoder \(bi_encoder\.json not found"):
        BiEncoder.load(tmp_path)


def test_swap_augmentation_swaps_texts_not_labels() -> None:
    frame = pairs_frame(6, 0)
    original = list(zip(frame["text_a"], frame["text_b"], frame["label"]))
    assert [PairDataset(frame, 0.0)[i] for i in range(6)] == original
    assert [PairDataset(frame, 1.0)[i] for i in range(6)] == [(b, a, y) for a, b, y in original]


def _optimized_parameters(module: BiEncoderModule) -> set[int]:
    groups = module.configure_optimizers()["optimizer"].param_groups
    return {id(p) for group in groups for p in group["params"]}


def test_frozen_word_embeddings_are_left_out_of_the_optimizer(bi_encoder: BiEncoder) -> None:
    train = TrainConfig(epochs=1, batch_size=4, lr=1e-4, head_lr=1e-3)
    module = BiEncoderModule(bi_encoder, train)
    module.trainer = SimpleNamespace(estimated_stepping_batches=10)
    table = bi_encoder.encoder.get_input_embeddings().weight
    assert not table.requires_grad and id(table) not in _optimized_parameters(module)
    assert {id(p) for p in bi_encoder.head.parameters()} <= _optimized_parameters(module)


def test_word_embeddings_train_when_not_frozen(bi_encoder: BiEncoder) -> None:
    train = TrainConfig(epochs=1, batch_size=4, lr=1e-4, head_lr=1e-3, freeze_word_embeddings=False)
    module = BiEncoderModule(bi_encoder, train)
    module.trainer = SimpleNamespace(estimated_stepping_batches=10)
    assert id(bi_encoder.encoder.get_input_embeddings().weight) in _optimized_parameters(module)


def test_length_grouped_batches_pad_less() -> None:
    frame = pairs_frame(400, 0)
    frame["text_a"] = [text * (1 + i % 5) for i, text in enumerate(frame["text_a"])]
    dataset = PairDataset(frame)
    lengths = dataset.lengths()

    def batch_spread(sampler: object) -> float:
        order = list(iter(sampler))
        batches = [order[i : i + 8] for i in range(0, len(order), 8)]
        return float(np.mean([np.ptp([lengths[i] for i in batch]) for batch in batches]))

    torch.manual_seed(0)
    grouped = train_sampler(dataset, 8, group_by_length=True)
    assert sorted(iter(grouped)) == list(range(len(dataset)))  # every row once per epoch
    assert batch_spread(grouped) < 0.5 * batch_spread(torch.randperm(len(dataset)).tolist())
    assert train_sampler(dataset, 8, group_by_length=False) is None


def test_frozen_bottom_layers_get_no_gradient_and_no_update(bi_encoder: BiEncoder) -> None:
    train = TrainConfig(epochs=1, batch_size=4, lr=1e-4, head_lr=1e-3, freeze_bottom_layers=1)
    module = BiEncoderModule(bi_encoder, train)
    module.trainer = SimpleNamespace(estimated_stepping_batches=10)
    blocks = encoder_layers(bi_encoder.encoder)
    frozen = [*bi_encoder.encoder.base_model.embeddings.parameters(), *blocks[0].parameters()]
    assert all(not p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in blocks[1].parameters())
    assert not {id(p) for p in frozen} & _optimized_parameters(module)
    with pytest.raises(
        ConfigError, match=rf"train.freeze_bottom_layers: cannot freeze {len(blocks)} of the "
    ):
        freeze_bottom(bi_encoder.encoder, len(blocks))


def test_a_max_length_beyond_the_encoder_s_positions_fails_before_training(
    tiny_model_config: ModelConfig,
) -> None:
    """Otherwise the first text longer than the encoder's positions fails mid-epoch."""
    too_long = dataclasses.replace(tiny_model_config, max_length=129)  # the tiny BERT has 128
    with pytest.raises(ConfigError, match=r"model.max_length: .* has 128 positions, got 129"):
        load_encoder(too_long)


def test_the_tiny_tokenizer_reads_its_words_not_unknowns(tiny_model_config: ModelConfig) -> None:
    """Guards the fixture: a tokenizer built without its vocabulary reads every word as [UNK]
    (transformers 5 ignores ``vocab_file=``), and the tests would then score empty texts."""
    tokenizer = load_tokenizer(tiny_model_config)
    text = synthetic_pairs(1, seed=1)[0][1]  # the fixture's vocabulary comes from these texts
    tokens = tokenizer.tokenize(text)
    assert tokens and tokenizer.unk_token not in tokens


def test_diverged_weights_are_refused_and_the_module_keeps_its_own(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    diverged = {k: v.clone() for k, v in before.items()}
    diverged["0.weight"][0, 1] = float("nan")
    diverged["1.bias"][0] = float("inf")
    checkpoint = tmp_path / "best.ckpt"
    torch.save({"state_dict": diverged}, checkpoint)
    best = ModelCheckpoint(dirpath=tmp_path)
    best.best_model_path = str(checkpoint)
    named = rf"{re.escape(str(checkpoint))}: training diverged: 2 weight tensors"
    with pytest.raises(TrainingDivergedError, match=rf"{named} .* \(0.weight, 1.bias\)"):
        load_best_weights(module, best)
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, before[name])
    torch.save({"state_dict": before}, checkpoint)
    load_best_weights(module, best)  # finite weights load as before


def test_non_finite_last_metrics_are_written_as_null_and_named() -> None:
    assert finite_or_null({"last_val_acc": 0.5, "last_val_loss": float("nan")}) == {
        "last_val_acc": 0.5,
        "last_val_loss": None,
        "non_finite": ["last_val_loss"],
    }
    assert finite_or_null({"last_val_acc": 0.5}) == {"last_val_acc": 0.5}
