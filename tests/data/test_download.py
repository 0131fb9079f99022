"""Getting the raw data: shared drive copy, public source layout, clear error when neither."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import pytest
from helpers import synthetic_pairs, write_mrpc_dataset, write_mrpc_file

from pair_classifier.config import DataConfig
from pair_classifier.data import download
from pair_classifier.data.download import PublicSource, download_data
from pair_classifier.data.reading import DataError


def test_copies_from_the_shared_drive(in_tmp_dir: Path, mrpc_config: DataConfig) -> None:
    shared = write_mrpc_dataset(in_tmp_dir / "shared", {"train": 6, "val": 3, "test": 3})
    assert download_data(mrpc_config, shared) == f"shared drive {shared}"
    copied = in_tmp_dir / mrpc_config.dir / "msr-para-test.tsv"
    assert copied.read_bytes() == (shared / "msr-para-test.tsv").read_bytes()
    assert download_data(mrpc_config, shared) == "present"


def _published_config(
    root: Path,
    mrpc_config: DataConfig,
    monkeypatch: pytest.MonkeyPatch,
    train_rows: int,
    test_rows: int | None,
) -> DataConfig:
    """MRPC laid out as SentEval publishes it, under ``root/published`` (a file:// source);
    ``test_rows`` None leaves the test file out of the source."""
    published = root / "published"
    write_mrpc_file(published / "train.txt", synthetic_pairs(train_rows, seed=0))
    if test_rows is not None:
        write_mrpc_file(published / "test.txt", synthetic_pairs(test_rows, seed=9))
    source = PublicSource(
        base_url=published.as_uri() + "/",
        files={"msr-para-train.tsv": "train.txt", "msr-para-test.tsv": "test.txt"},
        tail_split=("msr-para-train.tsv", "msr-para-val.tsv", 4),
    )
    monkeypatch.setitem(download.PUBLIC_SOURCES, "test_source", source)
    return dataclasses.replace(mrpc_config, shared_dir=None, public_source="test_source")


def test_public_source_is_laid_out_like_the_shared_drive(
    in_tmp_dir: Path, mrpc_config: DataConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _published_config(in_tmp_dir, mrpc_config, monkeypatch, 12, 5)
    assert download_data(config) == "public source test_source"
    target = in_tmp_dir / config.dir
    train = (target / "msr-para-train.tsv").read_bytes().splitlines()
    val = (target / "msr-para-val.tsv").read_bytes().splitlines()
    assert len(train) == 1 + 8 and len(val) == 1 + 4
    assert train[0] == val[0]  # both keep the header


def test_failed_download_names_the_url_and_writes_nothing(
    in_tmp_dir: Path, mrpc_config: DataConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _published_config(in_tmp_dir, mrpc_config, monkeypatch, 12, None)
    target = in_tmp_dir / config.dir
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("kept")
    with pytest.raises(DataError, match=r"published/test\.txt: download failed .* left as it was"):
        download_data(config)
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no staging left behind
    assert [p.name for p in target.iterdir()] == ["notes.txt"]  # train was not half-delivered
    assert (target / "notes.txt").read_text() == "kept"


def test_source_too_short_to_split_names_its_url(
    in_tmp_dir: Path, mrpc_config: DataConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _published_config(in_tmp_dir, mrpc_config, monkeypatch, 3, 3)
    with pytest.raises(DataError, match=r"published/train\.txt: 3 rows, cannot move the last 4"):
        download_data(config)
    assert not (in_tmp_dir / config.dir).exists()


def test_no_source_is_a_clear_error(in_tmp_dir: Path, mrpc_config: DataConfig) -> None:
    config = dataclasses.replace(mrpc_config, shared_dir="nowhere", public_source=None)
    with pytest.raises(DataError, match=r"data/mrpc: no data\. Expected files"):
        download_data(config)


def test_a_failed_copy_from_the_shared_drive_leaves_nothing_half_copied(
    in_tmp_dir: Path, mrpc_config: DataConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = write_mrpc_dataset(in_tmp_dir / "shared", {"train": 6, "val": 3, "test": 3})
    copy = download.shutil.copy2

    def disk_full_on_the_test_file(source: Path, destination: Path) -> None:
        if source.name == "msr-para-test.tsv":  # half the file lands, then the disk is full
            Path(destination).write_bytes(source.read_bytes()[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        copy(source, destination)

    monkeypatch.setattr(download.shutil, "copy2", disk_full_on_the_test_file)
    with pytest.raises(DataError, match=r"msr-para-test\.tsv: copy failed .* left as it was"):
        download_data(mrpc_config, shared)
    target = in_tmp_dir / mrpc_config.dir
    assert not target.exists() or not any(target.iterdir())
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    assert download_data(mrpc_config, shared) == f"shared drive {shared}"  # not "present"


def test_a_failed_dvc_pull_is_reported_when_no_other_source_has_the_data(
    in_tmp_dir: Path, mrpc_config: DataConfig
) -> None:
    from dvc.repo import Repo

    Repo.init(str(in_tmp_dir), no_scm=True)
    with Repo(str(in_tmp_dir)) as repo, repo.config.edit() as dvc_config:
        dvc_config["remote"]["storage"] = {"url": str(in_tmp_dir / "empty-remote")}
        dvc_config["core"]["remote"] = "storage"
    (in_tmp_dir / "data.dvc").write_text(
        "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data/mrpc\n"
    )
    config = dataclasses.replace(mrpc_config, shared_dir="nowhere", public_source=None)
    with pytest.raises(DataError, match=r"no data\. .*\(DVC: dvc pull failed: "):
        download_data(config)


def test_a_source_dir_without_the_files_is_an_error_not_a_download(
    in_tmp_dir: Path, mrpc_config: DataConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for a folder, the user must not silently get the public data set instead."""
    config = _published_config(in_tmp_dir, mrpc_config, monkeypatch, 12, 5)
    partial = write_mrpc_dataset(in_tmp_dir / "mine", {"train": 6, "val": 3, "test": 3})
    (partial / "msr-para-test.tsv").unlink()
    with pytest.raises(DataError, match=r"mine: --source-dir lacks \['msr-para-test.tsv'\]"):
        download_data(config, partial)
    assert not (in_tmp_dir / config.dir).exists()
