"""Pooling, pair features, the bi-encoder and its Lightning training."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from helpers import composed, pairs_frame, synthetic_pairs
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transformers import get_linear_schedule_with_warmup

from pair_classifier import logs
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
from pair_classifier.model.optim import parameter_groups
from pair_classifier.model.pooling import mean_pooling
from pair_classifier.model.progress_log import ProgressLog
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
    train = composed("train", TrainConfig, epochs=1, batch_size=4, lr=1e-4, head_lr=1e-3)
    module = BiEncoderModule(bi_encoder, train)
    module.trainer = SimpleNamespace(estimated_stepping_batches=10)
    table = bi_encoder.encoder.get_input_embeddings().weight
    assert not table.requires_grad and id(table) not in _optimized_parameters(module)
    assert {id(p) for p in bi_encoder.head.parameters()} <= _optimized_parameters(module)


def test_word_embeddings_train_when_not_frozen(bi_encoder: BiEncoder) -> None:
    train = composed(
        "train",
        TrainConfig,
        epochs=1,
        batch_size=4,
        lr=1e-4,
        head_lr=1e-3,
        freeze_word_embeddings=False,
    )
    module = BiEncoderModule(bi_encoder, train)
    module.trainer = SimpleNamespace(estimated_stepping_batches=10)
    assert id(bi_encoder.encoder.get_input_embeddings().weight) in _optimized_parameters(module)


def _exempt_from_decay(part: nn.Module) -> set[str]:
    """Biases and LayerNorm weights, found by module type rather than by name."""
    norms = {
        f"{name}.{parameter}"
        for name, module in part.named_modules()
        if isinstance(module, nn.LayerNorm)
        for parameter, _ in module.named_parameters(recurse=False)
    }
    return norms | {name for name, _ in part.named_parameters() if name.endswith("bias")}


def test_the_optimiser_builder_exempts_biases_and_layer_norm_weights_from_decay(
    bi_encoder: BiEncoder,
) -> None:
    groups = parameter_groups([(bi_encoder.encoder, 1e-4), (bi_encoder.head, 1e-3)], 0.01)
    settings = [(group["lr"], group["weight_decay"]) for group in groups]
    assert settings == [(1e-4, 0.01), (1e-4, 0.0), (1e-3, 0.01), (1e-3, 0.0)]
    for part, (decayed, exempt) in zip(
        (bi_encoder.encoder, bi_encoder.head), (groups[:2], groups[2:])
    ):
        name_of = {id(p): name for name, p in part.named_parameters()}
        exempt_names = {name_of[id(p)] for p in exempt["params"]}
        decayed_names = {name_of[id(p)] for p in decayed["params"]}
        assert exempt_names == _exempt_from_decay(part) and exempt_names
        assert decayed_names == set(name_of.values()) - exempt_names and decayed_names
        assert all(p.dim() == 2 for p in decayed["params"])  # weight matrices and embeddings


def _teacher_groups_before_the_shared_builder(module: BiEncoderModule) -> list[dict]:
    """The teacher's parameter groups as its own ``configure_optimizers`` built them before
    ``model/optim.py``: the shared builder must not change how the teacher trains."""
    config = module.train_config
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = []
    for part, lr in ((module.model.encoder, config.lr), (module.model.head, config.head_lr)):
        named = [(n, p) for n, p in part.named_parameters() if p.requires_grad]
        groups.append(
            {
                "params": [p for n, p in named if not n.endswith(no_decay)],
                "lr": lr,
                "weight_decay": config.weight_decay,
            }
        )
        groups.append(
            {"params": [p for n, p in named if n.endswith(no_decay)], "lr": lr, "weight_decay": 0.0}
        )
    return groups


def test_the_teacher_s_optimiser_is_unchanged_by_the_shared_builder(bi_encoder: BiEncoder) -> None:
    train = composed("train", TrainConfig, freeze_bottom_layers=1)
    module = BiEncoderModule(bi_encoder, train)
    total = 40
    module.trainer = SimpleNamespace(estimated_stepping_batches=total)
    built = module.configure_optimizers()
    expected = torch.optim.AdamW(_teacher_groups_before_the_shared_builder(module))
    reference = get_linear_schedule_with_warmup(expected, int(train.warmup_fraction * total), total)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults == expected.defaults
    assert len(optimizer.param_groups) == len(expected.param_groups) == 4
    for got, want in zip(optimizer.param_groups, expected.param_groups):
        assert [id(p) for p in got["params"]] == [id(p) for p in want["params"]]
        assert {k: v for k, v in got.items() if k != "params"} == {
            k: v for k, v in want.items() if k != "params"
        }
    assert built["lr_scheduler"]["interval"] == "step"
    for got, want in zip(scheduler.lr_lambdas, reference.lr_lambdas):
        assert [got(step) for step in range(total + 1)] == [want(step) for step in range(total + 1)]


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
    train = composed(
        "train", TrainConfig, epochs=1, batch_size=4, lr=1e-4, head_lr=1e-3, freeze_bottom_layers=1
    )
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


class _Regression(L.LightningModule):
    """The smallest module Lightning trains: one weight fitted to y = 2x."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Linear(1, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.weight(x), y)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.weight(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_progress_log_reports_each_epoch_its_batches_and_validation(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where no terminal shows Lightning's bar, training still says how far it is."""
    monkeypatch.setattr(logs, "PROGRESS_EVERY_S", 0.0)  # a line after every batch
    x = torch.linspace(0, 1, 8).unsqueeze(1)
    loader = DataLoader(TensorDataset(x, 2 * x), batch_size=2)
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[ProgressLog()],
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with caplog.at_level(logging.INFO, logger="pair_classifier.model.progress_log"):
        trainer.fit(_Regression(), loader, loader)
    messages = [r.getMessage() for r in caplog.records if r.name.endswith("progress_log")]
    assert messages[0] == "epoch 1/2: 4 batches"
    assert messages[1].startswith("epoch 1/2: 1 of 4 batches (25%)")
    assert any(m.startswith("epoch 1/2: val_loss ") for m in messages)
    assert any(m.startswith("epoch 2/2: val_loss ") for m in messages)


def test_a_long_encoding_logs_its_progress_and_a_short_one_stays_quiet(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit-classifier and evaluate spend most of their time encoding: a long pass says how far
    it is; the many short ones (a batch of pairs in predict) add no line."""
    bi_encoder = BiEncoder.load(tiny_model_dir / "bi_encoder")
    texts = [text for _, a, b in synthetic_pairs(12, seed=3) for text in (a, b)]
    with caplog.at_level(logging.INFO, logger="pair_classifier.model.bi_encoder"):
        bi_encoder.encode(texts, 8)
        assert caplog.records == []
        monkeypatch.setattr(logs, "PROGRESS_EVERY_S", 0.0)  # as if every batch took long
        bi_encoder.encode(texts, 8)
    assert [r.getMessage()[:38] for r in caplog.records] == [
        "encoding 24 texts: 1 of 3 batches (33%",
        "encoding 24 texts: 2 of 3 batches (67%",
    ]
