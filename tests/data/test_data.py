"""Parsing and validating raw pair files: every bad-input class, both policies."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from helpers import composed, synthetic_pairs, word_count, write_mrpc_dataset, write_mrpc_file

from pair_classifier.config import (
    DataColumns,
    DataConfig,
    DataFiles,
    ModelConfig,
    PrepareConfig,
)
from pair_classifier.constants import QUARANTINE_FILE
from pair_classifier.data.preparation import load_split, prepare_data
from pair_classifier.data.reading import DataError, read_pairs
from pair_classifier.data.validation import DataValidationError
from pair_classifier.model.encoder import load_tokenizer, token_counter

SIZES = {"train": 30, "val": 9, "test": 12}
MAX_LENGTH = 128  # model.max_length as configured


def _prepare(raw: Path, out: Path, config: DataConfig, policy: str = "quarantine") -> dict:
    return prepare_data(
        raw,
        out,
        config,
        composed("prepare", PrepareConfig, on_invalid=policy),
        word_count,
        MAX_LENGTH,
    )


def _quarantine(out: Path) -> list[dict]:
    lines = (out / QUARANTINE_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_reads_mrpc_format_with_bom_crlf_and_quotes(
    tmp_path: Path, mrpc_config: DataConfig
) -> None:
    path = write_mrpc_file(tmp_path / "f.tsv", synthetic_pairs(5, seed=0))
    result = read_pairs(path, mrpc_config)
    assert result.problems == []
    assert [p.line for p in result.pairs] == [2, 3, 4, 5, 6]
    assert result.pairs[0].text_a.endswith('"sources" said .')  # quotes kept as text
    assert result.pairs[0].raw_label == "0"


def test_clean_data_gives_three_splits_and_report(tmp_path: Path, mrpc_config: DataConfig) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    report = _prepare(raw, tmp_path / "out", mrpc_config)
    for split, size in SIZES.items():
        frame = load_split(tmp_path / "out", split)
        assert len(frame) == size
        assert report["splits"][split]["pairs"] == size
        assert set(frame["label"]) <= {0, 1}
    assert report["invalid_rows"] == {"total": 0, "by_reason": {}}
    fractions = report["splits"]["train"]["label_fraction"]
    assert fractions["paraphrase"] == pytest.approx(20 / 30, abs=1e-3)
    assert report["splits"]["train"]["tokens_per_text"]["p100"] >= 10


BAD_ROWS = {
    "malformed_row": "1\t1\t2\tonly four fields",
    "empty_text": "1\t3\t4\tA real sentence .\t   ",
    "unknown_label": "2\t5\t6\tA sentence here .\tAnother sentence there .",
}


@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_bad_row_is_quarantined_with_file_line_and_reason(
    tmp_path: Path, mrpc_config: DataConfig, reason: str
) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    write_mrpc_file(raw / "msr-para-train.tsv", synthetic_pairs(30, seed=1), [BAD_ROWS[reason]])
    report = _prepare(raw, tmp_path / "out", mrpc_config)
    assert report["invalid_rows"]["by_reason"] == {reason: 1}
    (record,) = _quarantine(tmp_path / "out")
    assert record["reason"] == reason
    assert record["line"] == 32  # header + 30 rows + this one
    assert record["file"].endswith("msr-para-train.tsv")
    assert len(load_split(tmp_path / "out", "train")) == 30


@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_bad_row_fails_naming_file_line_and_reason(
    tmp_path: Path, mrpc_config: DataConfig, reason: str
) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    write_mrpc_file(raw / "msr-para-train.tsv", synthetic_pairs(30, seed=1), [BAD_ROWS[reason]])
    with pytest.raises(DataValidationError, match=rf"msr-para-train\.tsv:32: {reason}"):
        _prepare(raw, tmp_path / "out", mrpc_config, policy="fail")


def test_undecodable_bytes_are_named(tmp_path: Path, mrpc_config: DataConfig) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    path = raw / "msr-para-test.tsv"
    path.write_bytes(path.read_bytes() + b"1\t7\t8\tbad \xff\xfe bytes\tfine text .\r\n")
    with pytest.raises(DataValidationError, match=r"msr-para-test\.tsv:14: undecodable_bytes"):
        _prepare(raw, tmp_path / "out", mrpc_config, policy="fail")
    _prepare(raw, tmp_path / "out", mrpc_config)
    (record,) = _quarantine(tmp_path / "out")
    assert "\\xff" in record["raw"]  # shown, not lost, and the quarantine file stays UTF-8


def test_duplicates_within_and_across_splits(tmp_path: Path, mrpc_config: DataConfig) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    train = synthetic_pairs(30, seed=1)
    test_row = synthetic_pairs(SIZES["train"] + SIZES["val"] + 1, seed=1)[-1]
    label, a, b = train[4]
    extra = [
        f"{label}\t1\t2\t{a}\t{b}",  # exact duplicate of line 6
        f"{1 - label}\t1\t2\t{a}\t{b}",  # same pair, other label
        f"{test_row[0]}\t1\t2\t{test_row[2]}\t{test_row[1]}",  # a test pair, swapped (symmetric)
    ]
    write_mrpc_file(raw / "msr-para-train.tsv", train, extra)
    report = _prepare(raw, tmp_path / "out", mrpc_config)
    assert report["invalid_rows"]["by_reason"] == {
        "conflicting_label": 1,
        "cross_split_duplicate": 1,
        "duplicate": 1,
    }
    details = {r["reason"]: r["detail"] for r in _quarantine(tmp_path / "out")}
    assert details["duplicate"] == "same pair as line 6"
    assert details["cross_split_duplicate"].startswith("same pair as test line")
    assert len(load_split(tmp_path / "out", "test")) == SIZES["test"]  # test keeps its pair


def test_quarantine_keeps_each_rejected_row_as_written(
    tmp_path: Path, mrpc_config: DataConfig
) -> None:
    """Every column, in the file's order, so a quarantined row can be put back as it was."""
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    label, a, b = synthetic_pairs(30, seed=1)[4]
    extra = [
        BAD_ROWS["empty_text"],
        BAD_ROWS["unknown_label"],
        f"{label}\t901\t902\t{a}\t{b}",  # duplicate of line 6, its own ids
    ]
    write_mrpc_file(raw / "msr-para-train.tsv", synthetic_pairs(30, seed=1), extra)
    _prepare(raw, tmp_path / "out", mrpc_config)
    kept = {record["reason"]: record["raw"] for record in _quarantine(tmp_path / "out")}
    assert kept == {"empty_text": extra[0], "unknown_label": extra[1], "duplicate": extra[2]}


def test_a_quoted_csv_row_is_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    row = '"x, y",1,"a ""quoted""\nline", kept  as is'
    path.write_text(f"b,l,a,extra\n{row}\n", encoding="utf-8")
    config = _csv_config(
        columns=DataColumns(text_a="a", text_b="b", label="l"),
        labels={"0": "no", "1": "yes"},
        positive_label="yes",
    )
    (pair,) = read_pairs(path, config).pairs
    assert pair.raw == row and pair.line == 2


def test_quarantine_mode_logs_one_summary_line(
    tmp_path: Path, mrpc_config: DataConfig, caplog: pytest.LogCaptureFixture
) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    extra = [BAD_ROWS["empty_text"], BAD_ROWS["unknown_label"], BAD_ROWS["malformed_row"]]
    write_mrpc_file(raw / "msr-para-train.tsv", synthetic_pairs(30, seed=1), extra)
    with caplog.at_level(logging.INFO, logger="pair_classifier.data.preparation"):
        _prepare(raw, tmp_path / "out", mrpc_config)
    (summary,) = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert summary == (
        "kept 51 pairs (train 30, val 9, test 12); quarantined 3 rows (empty_text 1, "
        f"malformed_row 1, unknown_label 1) in {tmp_path / 'out' / QUARANTINE_FILE}"
    )


def test_pairs_beyond_max_length_are_counted_and_named_without_library_warning(
    tmp_path: Path,
    mrpc_config: DataConfig,
    tiny_model_config: ModelConfig,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A 100,000-character text passes prepare, but the report counts it and the log names
    its file and line; the tokenizer's own warning (no file, no line) stays quiet."""
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    long_text = " ".join(["the court said"] * 7_000)[:100_000]
    write_mrpc_file(
        raw / "msr-para-test.tsv", synthetic_pairs(12, seed=2), [f"1\t7\t8\t{long_text}\tok ."]
    )
    tokenizer = load_tokenizer(tiny_model_config)
    tokenizer.model_max_length = 64  # what the library's warning compares with
    with caplog.at_level(logging.WARNING, logger="pair_classifier.data.preparation"):
        report = prepare_data(
            raw,
            tmp_path / "out",
            mrpc_config,
            composed("prepare", PrepareConfig),
            token_counter(tokenizer),
            tiny_model_config.max_length,
        )
    truncated = {split: counts["truncated_pairs"] for split, counts in report["splits"].items()}
    assert truncated == {"train": 0, "val": 0, "test": 1}
    (warning,) = [r.getMessage() for r in caplog.records if "max_length" in r.getMessage()]
    assert "msr-para-test.tsv:14 (text_a " in warning and "1 test pair(s)" in warning
    assert "indexing errors" not in capfd.readouterr().err


def test_missing_column_is_a_file_level_error(tmp_path: Path, mrpc_config: DataConfig) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    path = raw / "msr-para-val.tsv"
    path.write_text(path.read_text(encoding="utf-8-sig").replace("#2 String", "Second"), "utf-8")
    with pytest.raises(DataError, match=r"msr-para-val\.tsv: missing column\(s\) \['#2 String'\]"):
        _prepare(raw, tmp_path / "out", mrpc_config)


def test_failure_keeps_previous_outputs(tmp_path: Path, mrpc_config: DataConfig) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    out = tmp_path / "out"
    _prepare(raw, out, mrpc_config)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_mrpc_file(
        raw / "msr-para-train.tsv", synthetic_pairs(30, seed=1), [BAD_ROWS["empty_text"]]
    )
    with pytest.raises(DataValidationError):
        _prepare(raw, out, mrpc_config, policy="fail")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # no staging left


def _csv_config(**changes: object) -> DataConfig:
    config = composed(
        "data",
        DataConfig,
        "data=csv_pairs",
        columns={"text_a": "premise", "text_b": "hypothesis", "label": "label"},
    )
    return dataclasses.replace(config, name="csv", dir="data/csv", **changes)


def _three_class_frame(count: int) -> pd.DataFrame:
    labels = ["contradiction", "neutral", "entailment"]
    return pd.DataFrame(
        {
            "premise": [f'A man, "quoted", plays {i} .' for i in range(count)],
            "hypothesis": [f"Someone plays {i}, outside ." for i in range(count)],
            "label": [labels[i % 3] for i in range(count)],
        }
    )


def test_csv_three_classes_gets_a_stratified_validation_split(tmp_path: Path) -> None:
    _three_class_frame(60).to_csv(tmp_path / "train.csv", index=False)
    _three_class_frame(12).assign(premise=lambda f: f.premise + " test").to_csv(
        tmp_path / "test.csv", index=False
    )
    report = prepare_data(
        tmp_path,
        tmp_path / "out",
        _csv_config(),
        composed("prepare", PrepareConfig, val_fraction=0.2),
        word_count,
        MAX_LENGTH,
    )
    val = load_split(tmp_path / "out", "val")
    assert len(val) == 12 and report["splits"]["train"]["pairs"] == 48
    assert val["label_name"].value_counts().to_dict() == {
        "contradiction": 4,
        "neutral": 4,
        "entailment": 4,
    }
    assert load_split(tmp_path / "out", "train")["text_a"].iloc[0] == 'A man, "quoted", plays 0 .'


def test_jsonl_and_parquet_sources(tmp_path: Path) -> None:
    frame = _three_class_frame(30)
    with (tmp_path / "train.jsonl").open("w", encoding="utf-8") as handle:
        for record in frame.to_dict(orient="records"):
            handle.write(json.dumps(record) + "\n")
        handle.write("{not json\n")
    frame.assign(premise=lambda f: f.premise + " test").to_parquet(tmp_path / "test.parquet")
    jsonl = _csv_config(
        format="jsonl", files=DataFiles(train="train.jsonl", val=None, test="test.jsonl")
    )
    result = read_pairs(tmp_path / "train.jsonl", jsonl)
    assert len(result.pairs) == 30
    assert [(p.line, p.reason) for p in result.problems] == [(31, "malformed_row")]
    parquet = _csv_config(format="parquet")
    assert len(read_pairs(tmp_path / "test.parquet", parquet).pairs) == 30


def test_missing_file_names_the_config_key(tmp_path: Path, mrpc_config: DataConfig) -> None:
    with pytest.raises(DataError, match=r"msr-para-train\.tsv: file not found \(data\.files"):
        _prepare(tmp_path, tmp_path / "out", mrpc_config)


def test_csv_lines_count_blank_lines_and_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        "premise,hypothesis,label\n\n"
        '"two\nlines",b,neutral\n'
        ",,\n"  # a row of empty fields is a bad row, not a blank line to skip
        "c,d,entailment\n",
        encoding="utf-8",
    )
    result = read_pairs(path, _csv_config())
    assert result.problems == []
    # Line 5 is read (validation then quarantines it as empty_text), not skipped as blank.
    assert [(p.line, p.text_a) for p in result.pairs] == [(3, "two\nlines"), (5, ""), (6, "c")]


def test_csv_quote_left_open_fails_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        'premise,hypothesis,label\na,b,neutral\n"open,b,neutral\nc,d,entailment\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"train\.csv:3: cannot parse as csv"):
        read_pairs(path, _csv_config())


def test_jsonl_line_separator_inside_a_string_is_not_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    records = [
        {"premise": "x\u2028y", "hypothesis": "h", "label": "neutral"},
        {"premise": "p", "hypothesis": "q", "label": "entailment"},
    ]
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8"
    )
    result = read_pairs(path, _csv_config(format="jsonl"))
    assert result.problems == []
    assert [(p.line, p.text_a) for p in result.pairs] == [(1, "x\u2028y"), (2, "p")]


def test_csv_stray_quote_inside_a_field_fails_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        'premise,hypothesis,label\na,b,neutral\n"He said" hi,b,neutral\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"train\.csv:3: cannot parse as csv: ',' expected"):
        read_pairs(path, _csv_config())


def test_nulls_in_parquet_are_problems_and_integer_labels_keep_their_spelling(
    tmp_path: Path,
) -> None:
    """pandas turns a missing text into NaN and an integer column with a gap into floats:
    neither may reach training as the text "nan" or the label "1.0"."""
    frame = pd.DataFrame(
        {
            "premise": ["A first text .", None, "A third text .", "A fourth text ."],
            "hypothesis": ["Its pair .", "Its pair .", float("nan"), "Its pair ."],
            "label": [1, 0, 1, None],
        }
    )
    frame.to_parquet(tmp_path / "train.parquet")
    config = _csv_config(format="parquet", labels={"0": "no", "1": "yes"}, positive_label="yes")
    result = read_pairs(tmp_path / "train.parquet", config)
    assert [(p.line, p.raw_label) for p in result.pairs] == [(1, "1")]
    assert [(p.line, p.detail) for p in result.problems] == [
        (2, "null value in field(s) ['premise']"),
        (3, "null value in field(s) ['hypothesis']"),
        (4, "null value in field(s) ['label']"),
    ]


def test_jsonl_texts_must_be_text(tmp_path: Path) -> None:
    records = [
        {"premise": ["a", "list"], "hypothesis": "Its pair .", "label": "neutral"},
        {"premise": "A text .", "hypothesis": True, "label": "neutral"},
        {"premise": "A text .", "hypothesis": "Its pair .", "label": "neutral"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    result = read_pairs(path, _csv_config(format="jsonl"))
    assert [p.line for p in result.pairs] == [3]
    assert [(p.line, p.detail) for p in result.problems] == [
        (1, "expected text in field(s), got {'premise': 'list'}"),
        (2, "expected text in field(s), got {'hypothesis': 'bool'}"),
    ]


def test_a_class_missing_from_train_is_refused_naming_the_split_and_class(
    tmp_path: Path,
) -> None:
    frame = _three_class_frame(30)
    frame[frame.label != "neutral"].to_csv(tmp_path / "train.csv", index=False)
    frame.assign(premise=lambda f: f.premise + " val").to_csv(tmp_path / "val.csv", index=False)
    frame.assign(premise=lambda f: f.premise + " test").to_csv(tmp_path / "test.csv", index=False)
    config = _csv_config(files=DataFiles(train="train.csv", val="val.csv", test="test.csv"))
    with pytest.raises(DataError, match=r"train.csv: the train split has no pair of .*'neutral'"):
        prepare_data(
            tmp_path,
            tmp_path / "out",
            config,
            composed("prepare", PrepareConfig),
            word_count,
            MAX_LENGTH,
        )
    assert not (tmp_path / "out").exists()


def test_a_class_too_rare_to_stratify_gets_a_data_error(tmp_path: Path) -> None:
    frame = _three_class_frame(30)
    rare = pd.concat([frame[frame.label != "neutral"], frame[frame.label == "neutral"].head(1)])
    rare.to_csv(tmp_path / "train.csv", index=False)
    frame.assign(premise=lambda f: f.premise + " test").to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError, match=r"train.csv: cannot carve a stratified validation split"):
        prepare_data(
            tmp_path,
            tmp_path / "out",
            _csv_config(),
            composed("prepare", PrepareConfig),
            word_count,
            MAX_LENGTH,
        )


def test_a_split_with_every_row_set_aside_says_why(tmp_path: Path, mrpc_config: DataConfig) -> None:
    raw = write_mrpc_dataset(tmp_path / "raw", SIZES)
    bad = [BAD_ROWS["unknown_label"].replace("5\t6", f"{n}\t{n + 1}") for n in range(5, 9, 2)]
    write_mrpc_file(raw / "msr-para-val.tsv", [], bad)
    with pytest.raises(DataError) as raised:
        _prepare(raw, tmp_path / "out", mrpc_config)
    first, *shown = str(raised.value).splitlines()
    assert first.endswith(
        "msr-para-val.tsv: no valid val pair left; 2 invalid row(s) " "(unknown_label: 2):"
    )
    assert [line.split("msr-para-val.tsv:")[1] for line in shown] == [
        "2: unknown_label: label '2' is not one of ['0', '1']",
        "3: unknown_label: label '2' is not one of ['0', '1']",
    ]
