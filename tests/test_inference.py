"""Scoring pair files with a model folder, without Lightning or DVC."""

from __future__ import annotations

import codecs
import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO_ROOT, pairs_frame
from typer.testing import CliRunner

from pair_classifier import inference
from pair_classifier.cli import app
from pair_classifier.constants import (
    BI_ENCODER_SUBDIR,
    CLASSIFIER_CONFIG,
    CLASSIFIER_FILE,
    CLASSIFIER_SUBDIR,
    ENCODER_SUBDIR,
    HEAD_FILE,
    TEXT_A,
    TEXT_B,
)
from pair_classifier.errors import InputError
from pair_classifier.export.runtime import length_order
from pair_classifier.inference import predict_file
from pair_classifier.prediction_files import read_input_pairs, write_predictions
from pair_classifier.predictor import PairPredictor

EXAMPLE = REPO_ROOT / "examples" / "pairs.jsonl"


def test_predict_cli_writes_labels_and_probabilities(tiny_model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.jsonl"
    result = CliRunner().invoke(app, ["predict", str(tiny_model_dir), str(EXAMPLE), str(output)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    example = pd.read_json(EXAMPLE, lines=True)
    assert len(records) == len(example)
    for record, (_, row) in zip(records, example.iterrows()):
        assert record["text_a"] == row["text_a"]  # input columns carried through
        assert record["predicted_label"] in ("different", "same")
        probabilities = [record["probability_different"], record["probability_same"]]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        best = "same" if probabilities[1] > probabilities[0] else "different"
        assert record["predicted_label"] == best


def test_a_pair_scores_the_same_alone_or_in_a_batch(tiny_model_dir: Path) -> None:
    predictor = PairPredictor.load(tiny_model_dir, batch_size=8)
    frame = pairs_frame(12, 3)
    together = predictor.predict_proba(frame)
    alone = [predictor.predict_proba(frame.iloc[[i]])[0] for i in range(len(frame))]
    assert abs(together - alone).max() < 1e-5


def test_tsv_input_with_other_column_names(tiny_model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.tsv"
    pairs_frame(4, 5).rename(columns={"text_a": "q1", "text_b": "q2"}).to_csv(
        source, sep="\t", index=False
    )
    output = tmp_path / "out.csv"
    args = [
        "predict",
        str(tiny_model_dir),
        str(source),
        str(output),
        "--text-a",
        "q1",
        "--text-b",
        "q2",
    ]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert list(pd.read_csv(output).columns[:3]) == ["label", "q1", "q2"]


def test_named_text_columns_win_and_columns_called_text_a_or_text_b_are_kept(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.tsv"
    frame = pairs_frame(4, 5).rename(columns={"text_a": "q1", "text_b": "q2"})
    frame["text_a"] = ["note one", "note two", "note three", "note four"]  # data, not the text
    frame["text_b"] = list("wxyz")
    frame.to_csv(source, sep="\t", index=False)
    output = tmp_path / "out.csv"
    args = ["predict", str(tiny_model_dir), str(source), str(output)]
    result = CliRunner().invoke(app, [*args, "--text-a", "q1", "--text-b", "q2"])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(output)
    assert list(written.columns) == [
        "label",
        "q1",
        "q2",
        "text_a",
        "text_b",
        "predicted_label",
        "probability_different",
        "probability_same",
    ]
    assert written[["label", "q1", "q2", "text_a", "text_b"]].equals(frame)
    pairs = frame[["q1", "q2"]].set_axis([TEXT_A, TEXT_B], axis=1)
    expected = PairPredictor.load(tiny_model_dir, 8).predict_proba(pairs)[:, 1]
    assert abs(written["probability_same"] - expected).max() < 1e-5


def test_jsonl_keys_missing_on_some_lines_come_back_as_null_not_nan(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": 7, "text_a": "a cat sat", "text_b": "a cat sat down", "meta": {"k": [1]}}\n'
        '{"text_a": "the sky", "text_b": "a dog ran"}\n',
        encoding="utf-8",
    )
    output = tmp_path / "out.jsonl"
    args = ["predict", str(tiny_model_dir), str(source), str(output)]
    assert CliRunner().invoke(app, args).exit_code == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    first, second = (
        json.loads(line, parse_constant=refuse) for line in output.read_text().splitlines()
    )
    assert (first["id"], first["meta"]) == (7, {"k": [1]})  # an integer stays one
    assert (second["id"], second["meta"]) == (None, None)


def test_a_failed_write_keeps_the_old_output_and_leaves_no_staging_file(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("previous\n")
    unwritable = pd.DataFrame({"text_a": ["x"], "text_b": ["y"], "extra": [object()]})
    with pytest.raises(TypeError):
        write_predictions(unwritable, output)
    assert output.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_a_failed_rename_is_named_and_keeps_the_old_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out.csv"
    output.write_text("previous\n")

    def refuse(self: Path, target: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self), str(target))

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(InputError, match=r"out\.csv: cannot write: Permission denied"):
        write_predictions(pd.DataFrame({"text_a": ["x"], "text_b": ["y"]}), output)
    assert output.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_an_output_under_a_file_is_named_without_a_traceback(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder\n")
    output = blocker / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(tiny_model_dir), str(EXAMPLE), str(output)])
    assert result.exit_code == 2, result.output
    assert f"{output}: cannot write: File exists ({blocker})" in result.output


def test_an_unreadable_input_is_named_without_a_traceback(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("text_a,text_b\nx,y\n")
    read_bytes = Path.read_bytes

    def unreadable(self: Path) -> bytes:
        if self == source:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    output = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(tiny_model_dir), str(source), str(output)])
    assert result.exit_code == 2, result.output
    assert f"{source}: cannot read: Permission denied" in result.output
    assert not output.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("out.txt", r"out\.txt: unsupported file type '\.txt'"),
        ("folder.csv", r"folder\.csv: is a folder"),
    ],
)
def test_a_bad_output_path_stops_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    (tmp_path / "folder.csv").mkdir()

    def must_not_load(model: Path, batch_size: int) -> None:
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(inference, "load_predictor", must_not_load)
    with pytest.raises(InputError, match=message):
        predict_file(tmp_path / "model", EXAMPLE, tmp_path / name, 8, TEXT_A, TEXT_B)


@pytest.mark.parametrize("column", ["predicted_label", "probability_same"])
def test_input_columns_named_like_predictions_are_refused_before_scoring(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, column: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"text_a,text_b,{column}\nx,y,mine\n")
    output = tmp_path / "out.csv"

    def must_not_score(self: PairPredictor, pairs: pd.DataFrame) -> np.ndarray:
        raise AssertionError("scored before the clash was found")

    monkeypatch.setattr(PairPredictor, "predict_proba", must_not_score)
    result = CliRunner().invoke(app, ["predict", str(tiny_model_dir), str(source), str(output)])
    assert result.exit_code == 2, result.output
    assert f"{source}: column(s) ['{column}'] have the names of prediction" in result.output
    assert not output.exists()


def test_a_column_only_prefixed_like_a_probability_is_carried(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("text_a,text_b,probability_maybe\nx,y,mine\n")
    output = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(tiny_model_dir), str(source), str(output)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(output)["probability_maybe"].tolist() == ["mine"]


def test_a_batch_size_below_one_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    args = ["predict", str(tiny_model_dir), str(EXAMPLE), str(output), "--batch-size", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--batch-size" in result.output
    assert not output.exists()


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("text_a,other\nx,y\n", ".csv", r"missing column\(s\) \['text_b'\]"),
        ("text_a,text_b\nx,y\nz,  \n", ".csv", r"in\.csv:3: field 'text_b' is empty"),
        (
            '{"text_a": "x", "text_b": "y"}\n{"text_a": "x"}\n',
            ".jsonl",
            r"in\.jsonl:2: field 'text_b'",
        ),
        ("a|b\n", ".txt", "unsupported file type '.txt'"),
        # Line numbers count blank lines and the lines of a quoted multi-line field.
        ('text_a,text_b\n\nx,y\n"two\nlines",z\nw,  \n', ".csv", r"in\.csv:6: field 'text_b'"),
        ('{"text_a": "x", "text_b": "y"}\n\n{"text_a": "x"}\n', ".jsonl", r"in\.jsonl:3: field"),
        ("text_a,text_b\nx,y,z\n", ".csv", r"in\.csv:2: expected 2 fields separated by ','"),
        ('{"text_a": "x", "text_b": "y"}\n{"text_a": "x"\n', ".jsonl", r"in\.jsonl:2: not JSON"),
        ('["x", "y"]\n', ".jsonl", r"in\.jsonl:1: expected a JSON object, found list"),
        ("text_a\ttext_b\n", ".tsv", r"in\.tsv: no pairs to score"),
        # A quote left open must not swallow the following rows into one field.
        ('text_a,text_b\nhello,"world\nfoo,bar\n', ".csv", r"in\.csv:2: cannot parse: unexpected"),
        ("text_a,text_b\nx,y\n,\n", ".csv", r"in\.csv:3: field 'text_a' is empty"),
        ("{}\n{}\n", ".jsonl", r"missing column\(s\) \['text_a', 'text_b'\]"),
        (
            "\ntext_a,text_b,text_a\nx,y,z\n",
            ".csv",
            r"in\.csv:2: column name\(s\) \['text_a'\] rep",
        ),
        (
            '{"text_a": "x\u2028y", "text_b": "y"}\n{"text_a": "z"}\n',
            ".jsonl",
            r"in\.jsonl:2: field",
        ),
        # A JSON value that is not a string is refused, not scored as its Python text.
        (
            '{"text_a": "x", "text_b": "y"}\n{"text_a": "x", "text_b": ["a", "b"]}\n',
            ".jsonl",
            r"in\.jsonl:2: field 'text_b' must be a string, found an array: \[\"a\", \"b\"\]$",
        ),
        (
            '{"text_a": 5, "text_b": "y"}\n',
            ".jsonl",
            r"in\.jsonl:1: field 'text_a' .* a number: 5$",
        ),
        ('\n{"text_a": "x", "text_b": true}\n', ".jsonl", r"in\.jsonl:2: .* a boolean: true$"),
        ('{"text_a": {"k": 1}, "text_b": "y"}\n', ".jsonl", r":1: .* an object: \{\"k\": 1\}$"),
        (
            json.dumps({"text_a": "x", "text_b": list(range(100))}),
            ".jsonl",
            r":1: field 'text_b' must be a string, found an array: \[0, 1, 2, [0-9, ]+\.\.\.$",
        ),
        # null is empty, as a missing key is
        ('{"text_a": null, "text_b": "y"}\n', ".jsonl", r"in\.jsonl:1: field 'text_a' is empty"),
        # the first bad text in the file is named, whichever column it is in
        (
            "text_a,text_b\nx,y\nx,\n,y\n",
            ".csv",
            r"in\.csv:3: field 'text_b' is empty",
        ),
    ],
)
def test_bad_input_is_named(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_input_pairs(path)


def test_undecodable_bytes_are_named_by_line_and_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"text_a,text_b\nx,y\n\xffz,w\n")
    with pytest.raises(InputError, match=r"in\.csv:3: not valid UTF-8"):
        read_input_pairs(path)
    path.write_bytes("\ufefftext_a,text_b\nx,y\n".encode("utf-8"))
    assert read_input_pairs(path).to_dict(orient="records") == [{"text_a": "x", "text_b": "y"}]


def test_csv_fields_are_text_as_written(tmp_path: Path) -> None:
    """CSV has no types: a number is its characters, so it stays exactly what the file says."""
    path = tmp_path / "in.csv"
    path.write_text("text_a,text_b\n5,1.10\n", encoding="utf-8")
    assert read_input_pairs(path).to_dict(orient="records") == [{"text_a": "5", "text_b": "1.10"}]


def test_long_fields_and_unnamed_columns_are_read(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    long_text = "word " * 40_000  # beyond the csv module's default field limit
    path.write_text(f"text_a,text_b,,\n{long_text},y,,\n", encoding="utf-8")
    frame = read_input_pairs(path)
    assert list(frame.columns) == ["text_a", "text_b", "Unnamed: 2", "Unnamed: 3"]
    assert frame["text_a"].tolist() == [long_text]


def test_cli_reports_bad_input_without_a_traceback(tiny_model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    output.write_text("previous predictions\n", encoding="utf-8")
    missing = tmp_path / "missing.csv"
    result = CliRunner().invoke(app, ["predict", str(tiny_model_dir), str(missing), str(output)])
    assert result.exit_code == 2
    assert "missing.csv: file not found" in result.output
    assert output.read_text(encoding="utf-8") == "previous predictions\n"  # left as it was


def _predict_keeps_output(model: Path, tmp_path: Path) -> str:
    """Run ``predict`` over an existing output file; return its message, check the file."""
    output = tmp_path / "out.csv"
    output.write_text("previous predictions\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", str(model), str(EXAMPLE), str(output)])
    assert result.exit_code == 2, result.output
    assert output.read_text(encoding="utf-8") == "previous predictions\n"  # left as it was
    return result.output


@pytest.mark.parametrize(
    ("part", "damage", "message"),
    [
        (f"{BI_ENCODER_SUBDIR}/{HEAD_FILE}", "truncate", r"head\.pt: cannot read the softmax head"),
        (
            f"{BI_ENCODER_SUBDIR}/{ENCODER_SUBDIR}/config.json",
            "truncate",
            r"bi_encoder/encoder: cannot read a saved transformer encoder",
        ),
        (
            f"{BI_ENCODER_SUBDIR}/{ENCODER_SUBDIR}/tokenizer.json",
            "truncate",
            r"bi_encoder/encoder: cannot read a saved tokenizer",
        ),
        (
            f"{CLASSIFIER_SUBDIR}/{CLASSIFIER_FILE}",
            "truncate",
            r"svm\.joblib: cannot read a fitted scikit-learn classifier",
        ),
        (
            f"{CLASSIFIER_SUBDIR}/{CLASSIFIER_CONFIG}",
            "truncate",
            r"classifier\.json: cannot read the classifier's card",
        ),
        (
            f"{CLASSIFIER_SUBDIR}/{CLASSIFIER_FILE}",
            "delete",
            r"classifier: not a fitted classifier \(svm\.joblib not found\)",
        ),
    ],
)
def test_a_damaged_model_folder_is_named(
    tiny_model_dir: Path, tmp_path: Path, part: str, damage: str, message: str
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    if damage == "delete":
        (model / part).unlink()
    else:
        (model / part).write_bytes(b"{truncat")
    assert re.search(message, _predict_keeps_output(model, tmp_path))


def test_a_damaged_graph_or_tokenizer_is_named(
    tiny_model_dir: Path, export_dir: Path, tmp_path: Path
) -> None:

    shutil.copytree(export_dir, tmp_path / "onnx")
    graph = tmp_path / "onnx" / "student.onnx"
    tokenizer = tmp_path / "onnx" / "tokenizer" / "tokenizer.json"
    tokenizer.write_bytes(b"{truncat")
    assert "tokenizer.json: cannot read a tokenizers tokenizer.json" in _predict_keeps_output(
        graph, tmp_path
    )
    tokenizer.unlink()
    assert "tokenizer.json: not found" in _predict_keeps_output(graph, tmp_path)
    shutil.copy(tiny_model_dir / BI_ENCODER_SUBDIR / ENCODER_SUBDIR / "tokenizer.json", tokenizer)
    card = tmp_path / "onnx" / "model.json"
    card.write_text(card.read_text().replace('"max_length": 32', '"max_length": "32"'))
    assert "model.json: field 'max_length' missing or not a int" in _predict_keeps_output(
        graph, tmp_path
    )
    card.write_text(card.read_text().replace('"max_length": "32"', '"max_length": 32'))
    graph.write_bytes(graph.read_bytes()[:100])
    assert "student.onnx: cannot read an ONNX graph" in _predict_keeps_output(graph, tmp_path)


def test_inference_imports_neither_lightning_nor_dvc() -> None:
    code = (
        "import sys, pair_classifier.inference, pair_classifier.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'dvc', 'hydra')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_predict_with_an_exported_graph_matches_pytorch(
    tiny_model_dir: Path, export_dir: Path, tmp_path: Path
) -> None:

    output = tmp_path / "onnx.csv"
    args = ["predict", str(export_dir / "student.onnx"), str(EXAMPLE), str(output)]
    assert CliRunner().invoke(app, args).exit_code == 0
    reference = PairPredictor.load(tiny_model_dir, 8).predict(pd.read_json(EXAMPLE, lines=True))
    exported = pd.read_csv(output)
    assert (exported["predicted_label"] == reference["predicted_label"]).all()
    assert abs(exported["probability_same"] - reference["probability_same"]).max() < 1e-4


def test_a_graph_scores_length_sorted_batches_and_answers_in_input_order(
    tiny_model_dir: Path, export_dir: Path
) -> None:
    from pair_classifier.export.onnx_predictor import OnnxPairPredictor

    frame = pairs_frame(24, 7)
    frame[TEXT_A] = [" ".join([text] * (1 + i % 3)) for i, text in enumerate(frame[TEXT_A])]
    # one word the tiny vocabulary lacks: many characters, one token; characters would mislead
    frame[TEXT_B] = ["z" * 60 if i % 4 == 0 else text for i, text in enumerate(frame[TEXT_B])]
    predictor = OnnxPairPredictor(export_dir / "student.onnx", batch_size=4, threads=1)
    run, token_ids = predictor.run, predictor.tokenize.token_ids
    widths, texts_tokenised = [], []

    def recording(inputs: dict) -> tuple:
        widths.append((inputs["input_ids_a"].shape[1], inputs["input_ids_b"].shape[1]))
        return run(inputs)

    def counting(texts: pd.Series) -> list[list[int]]:
        texts_tokenised.extend(texts)
        return token_ids(texts)

    def batch_widths(order: np.ndarray, tokens_a: np.ndarray, tokens_b: np.ndarray) -> list:
        batches = [order[start : start + 4] for start in range(0, len(order), 4)]
        return [(tokens_a[rows].max(), tokens_b[rows].max()) for rows in batches]

    predictor.run, predictor.tokenize.token_ids = recording, counting
    probabilities = predictor.predict_proba(frame)
    assert len(texts_tokenised) == 2 * len(frame)  # each text tokenised once
    tokens_a = np.array([len(ids) for ids in token_ids(frame[TEXT_A])])
    tokens_b = np.array([len(ids) for ids in token_ids(frame[TEXT_B])])
    assert widths == batch_widths(length_order(tokens_a, tokens_b), tokens_a, tokens_b)
    by_characters = np.argsort((frame[TEXT_A].str.len() + frame[TEXT_B].str.len()).to_numpy())
    assert widths != batch_widths(by_characters, tokens_a, tokens_b)  # the frame tells them apart
    assert sum(a + b for a, b in widths) < sum(
        a + b for a, b in batch_widths(by_characters, tokens_a, tokens_b)
    )
    reference = PairPredictor.load(tiny_model_dir, 4).predict_proba(frame)
    assert np.ptp(reference[:, 1]) > 1e-3  # pairs score differently, so order shows
    assert abs(probabilities - reference).max() < 1e-4

    def tokens_of_text_a(inputs: dict) -> tuple:
        """Each pair's 'probability' is its own first text's token count."""
        tokens = inputs["attention_mask_a"].sum(axis=1, keepdims=True).astype(np.float32)
        return tokens, np.hstack([tokens, -tokens])

    predictor.run, predictor.tokenize.token_ids = tokens_of_text_a, token_ids
    own_counts = [predictor.tokenize(frame.iloc[[i]])["attention_mask_a"].sum() for i in range(24)]
    assert predictor.predict_proba(frame)[:, 0].tolist() == own_counts
    assert predictor.predict_proba(frame.iloc[:0]).shape == (0, 2)


def test_onnx_inference_needs_no_torch() -> None:
    code = (
        "import sys, pair_classifier.inference, pair_classifier.export.onnx_predictor, "
        "pair_classifier.prediction_files; print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
