"""`pair-classifier demo` in a real headless chromium: type a pair, press the button, read the
label, its bars and the details from the page, and compare them with what `OnnxPairPredictor`
gives for that pair; the version and its lineage command; the truncation flag; a refused input;
the token rule (login form, 401 without the session, a wrong token refused); the same page on a
real Triton server. Screenshots are kept (conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from demo_helpers import EXPORT_VERSION, MODEL_NAME, demo_params, start_demo
from helpers import composed, pairs_frame
from serving.serving_helpers import CLI, Server, free_port, post, serving_params

from pair_classifier.demo.access import DemoAccessError, page_token
from pair_classifier.errors import USER_ERROR_EXIT_CODE
from pair_classifier.export.interface import variant_file
from pair_classifier.export.onnx_predictor import OnnxPairPredictor
from pair_classifier.predictor import PREDICTED_LABEL, PROBABILITY_PREFIX, with_predictions
from pair_classifier.serving.settings import ServingConfig

PAGE_TIMEOUT_S = 60  # a busy 2-core machine: the page's scripts, then one scoring call
TOKEN_ENV = "PAIR_CLASSIFIER_SERVING_TOKEN"  # serving.token_env
LONG_TEXT_REPEATS = 6  # the first text 6 times: beyond the tiny model's 32 tokens
TRITON_VERSION = 7
MAX_ABS_PROBABILITY_DIFF = 1e-5  # Triton batches on its side; the export answers bit for bit
DETAIL_LINE = re.compile(r"^([\w ]+):(?: (.*))?$")


def _pair(index: int) -> tuple[str, str]:
    row = pairs_frame(8, 11).iloc[index]
    return row["text_a"], row["text_b"]


def _expected(export_dir: Path, text_a: str, text_b: str) -> dict[str, str]:
    """What `predict` writes for the pair (label, probabilities to its decimals)."""
    import pandas as pd

    predictor = OnnxPairPredictor(export_dir / variant_file("student"), 1)
    row = with_predictions(predictor, pd.DataFrame({"text_a": [text_a], "text_b": [text_b]}))
    return {
        column: f"{value:.6f}" if column.startswith(PROBABILITY_PREFIX) else str(value)
        for column, value in row.iloc[0].items()
        if column.startswith(PROBABILITY_PREFIX) or column == PREDICTED_LABEL
    }


def _wait(driver: object, condition: Callable[[object], object]) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PAGE_TIMEOUT_S).until(condition)


def _classify(driver: object, text_a: str, text_b: str) -> str:
    """Type the pair into the page's boxes and press the button, as a person would; the
    details' text before the press (the answer is the next different one)."""
    from selenium.webdriver.common.by import By

    for box, text in (("#text-a textarea", text_a), ("#text-b textarea", text_b)):
        field = _wait(driver, lambda d, box=box: d.find_element(By.CSS_SELECTOR, box))
        field.clear()
        field.send_keys(text)
    before = driver.find_element(By.ID, "details").text
    driver.find_element(By.CSS_SELECTOR, "#classify").click()
    return before


def _answer(driver: object, previous: str = "") -> tuple[str, dict[str, float], dict[str, str]]:
    """(the label's heading, each bar's value by class, the details as key: value) once the
    details show a new answer."""
    from selenium.webdriver.common.by import By

    def details_text(d: object) -> str:
        text = d.find_element(By.ID, "details").text
        # while scoring, Gradio puts a timer ("0.4s") above the old answer
        return text if text.startswith(PREDICTED_LABEL) and text != previous else ""

    text = _wait(driver, details_text)
    heading = driver.find_element(By.CSS_SELECTOR, '#prediction [data-testid="label-output-value"]')
    bars = {
        meter.get_attribute("aria-label"): float(meter.get_attribute("value"))
        for meter in driver.find_elements(By.CSS_SELECTOR, "#prediction meter")
    }
    details: dict[str, str] = {}
    key = None
    for line in filter(None, map(str.strip, text.splitlines())):
        match = DETAIL_LINE.match(line)
        if match:  # "key: value", or "key:" with the value (code) on the next line
            key, details[match[1]] = match[1], match[2] or ""
        else:
            assert key is not None, text
            details[key] = f"{details[key]} {line}".strip()
    return heading.text, bars, details


def _assert_predicts(
    answer: tuple[str, dict[str, float], dict[str, str]],
    expected: dict[str, str],
    tolerance: float = 0.0,
) -> None:
    heading, bars, details = answer
    assert heading == details[PREDICTED_LABEL] == expected[PREDICTED_LABEL]
    for column, value in expected.items():
        if column.startswith(PROBABILITY_PREFIX):
            name = column.removeprefix(PROBABILITY_PREFIX)
            assert abs(float(details[column]) - float(value)) <= tolerance, column
            assert abs(bars[name] - float(value)) <= tolerance + 1e-6, name


def _in_view(driver: object, element_id: str) -> bool:
    """Whether the element lies inside the window, so a screenshot shows it."""
    bottom = driver.execute_script(
        f"return document.getElementById('{element_id}').getBoundingClientRect().bottom"
    )
    return 0 < bottom <= driver.execute_script("return window.innerHeight")


def _without_token() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != TOKEN_ENV}


@pytest.fixture(scope="module")
def export_demo(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The page on backend auto with no Triton on the probed port: the export folder answers."""
    folder = tmp_path_factory.mktemp("demo-export")
    server = start_demo(demo_params(folder, export_dir, free_port()), _without_token())
    yield server
    server.stop()


@pytest.mark.slow
def test_the_page_answers_what_predict_gives(
    export_demo: Server, export_dir: Path, browser: object, screenshot: Callable
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(export_demo.url)
    text_a, text_b = _pair(1)
    _classify(browser, text_a, text_b)
    answer = _answer(browser)
    _assert_predicts(answer, _expected(export_dir, text_a, text_b))
    details = answer[2]
    assert details["truncated"] == "false"
    assert details["model version"] == f"{EXPORT_VERSION} of {MODEL_NAME}"
    reference = f"models:/{MODEL_NAME}/{EXPORT_VERSION}"
    assert details["lineage"] == f"pair-classifier lineage {reference}"
    assert "export folder" in browser.find_element(By.TAG_NAME, "body").text
    assert _in_view(browser, "prediction")
    shot = screenshot(browser, "demo-answer")
    assert shot.read_bytes().startswith(b"\x89PNG")

    long_a = " ".join([text_a] * LONG_TEXT_REPEATS)
    answer = _answer(browser, previous=_classify(browser, long_a, text_b))
    assert answer[2]["truncated"].startswith("true")
    _assert_predicts(answer, _expected(export_dir, long_a, text_b))

    _classify(browser, "   ", text_b)
    toast = _wait(
        browser,
        lambda d: "".join(
            e.text for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="toast-text"]')
        ),
    )
    assert "field 'text_a', row 0: expected a non-empty text" in toast
    screenshot(browser, "demo-refused")


@pytest.mark.slow
def test_with_a_token_the_page_needs_a_login(
    export_dir: Path, tmp_path: Path, browser: object, screenshot: Callable
) -> None:
    from selenium.webdriver.common.by import By

    token = "t0ken-" + "x" * 40
    params = demo_params(tmp_path, export_dir, backend="export")
    server = start_demo(params, _without_token() | {TOKEN_ENV: token})
    try:
        for path in ("/config", "/gradio_api/info"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.url + path, timeout=30)
            assert refused.value.code == 401, path
        reply = post(f"{server.url}/gradio_api/call/classify", b'{"data": ["a cat", "the cat"]}')
        assert reply.status == 401
        assert b"Not authenticated" in reply.body

        browser.get(server.url)
        _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[type=password]"))
        assert not browser.find_elements(By.CSS_SELECTOR, "#text-a")  # only the login form
        assert f"${TOKEN_ENV}" in browser.find_element(By.TAG_NAME, "body").text
        screenshot(browser, "demo-login")
        for given in ("wrong-" + "x" * 40, token):
            user = browser.find_element(By.CSS_SELECTOR, "input[type=text]")
            password = browser.find_element(By.CSS_SELECTOR, "input[type=password]")
            user.clear()
            user.send_keys("demo")
            password.clear()
            password.send_keys(given)
            browser.find_element(By.XPATH, "//button[normalize-space()='Login']").click()
            if given != token:
                _wait(browser, lambda d: "Incorrect Credentials" in d.page_source)
                assert not browser.find_elements(By.CSS_SELECTOR, "#text-a")
        text_a, text_b = _pair(2)
        _classify(browser, text_a, text_b)
        _assert_predicts(_answer(browser), _expected(export_dir, text_a, text_b))
    finally:
        server.stop()
    assert server.process.returncode == 0  # SIGTERM: the page closed and the command ended
    log = server.log.read_text()
    assert "a login with a wrong user name or token was refused" in log
    assert token not in log


def test_an_exposed_bind_needs_a_strong_token(tmp_path: Path) -> None:
    serving = composed("serving", ServingConfig)
    assert page_token(serving, "127.0.0.1", {}) is None  # loopback, no token: an open page
    token = "y" * serving.min_token_chars
    assert page_token(serving, "0.0.0.0", {serving.token_env: token}) == token
    assert page_token(serving, "127.0.0.1", {serving.token_env: token}) == token
    for env, message in (
        ({}, "refusing to listen on 0.0.0.0 without a token"),
        ({serving.token_env: "short"}, "holds 5 characters; expected at least"),
        ({serving.token_env: token[:-1] + '"'}, "may hold only letters"),
    ):
        with pytest.raises(DemoAccessError, match=message):
            page_token(serving, "0.0.0.0", env)
    result = subprocess.run(
        [str(CLI), "demo", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=_without_token(),
        check=False,
    )
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr


@pytest.mark.slow
def test_the_page_on_a_triton_server(
    export_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    browser: object,
    screenshot: Callable,
) -> None:
    from selenium.webdriver.common.by import By
    from serving.serving_helpers import MAX_BATCH_PAIRS, start_server, tiny_triton_repository

    work = tmp_path_factory.mktemp("demo-triton")
    repository = tiny_triton_repository(export_dir, work, TRITON_VERSION, MAX_BATCH_PAIRS)
    http_port = free_port()
    triton = start_server(
        [str(CLI), "serve", "triton", "--repository", str(repository)]
        + ["--http-port", str(http_port), "--metrics-port", str(free_port())]
        + ["--params-file", str(serving_params(work))],
        f"http://127.0.0.1:{http_port}",
        "/v2/health/ready",
        dict(os.environ),
        work / "triton.log",
    )
    page_dir = work / "page"
    page_dir.mkdir()
    demo = start_demo(
        demo_params(page_dir, export_dir, backend="export"),
        _without_token(),
        "--triton-url",
        triton.url,
    )
    try:
        browser.get(demo.url)
        text_a, text_b = _pair(3)
        _classify(browser, text_a, text_b)
        answer = _answer(browser)
        assert f"Triton at {triton.url}" in browser.find_element(By.TAG_NAME, "body").text
        screenshot(browser, "demo-triton")
    finally:
        demo.stop()
        triton.stop()
    _assert_predicts(answer, _expected(export_dir, text_a, text_b), MAX_ABS_PROBABILITY_DIFF)
    assert answer[2]["model version"] == f"{TRITON_VERSION} of {MODEL_NAME}"
    assert answer[2]["lineage"] == f"pair-classifier lineage models:/{MODEL_NAME}/{TRITON_VERSION}"


def test_the_version_shown_is_the_registered_graphs(tmp_path: Path) -> None:
    from pair_classifier.demo.scoring import mlflow_model_link, registered_identity

    record = tmp_path / "register.json"
    assert registered_identity(record, "fp32") == (None, None)  # nothing registered yet
    record.write_text(
        '{"model_name": "pair-classifier", "version": 4, "served_variant": "int8_static"}',
        encoding="utf-8",
    )
    assert registered_identity(record, "int8_static") == ("pair-classifier", "4")
    assert registered_identity(record, "fp32") == (None, None)  # another graph than version 4's
    reference = "models:/pair-classifier/4"
    assert mlflow_model_link("http://127.0.0.1:5000/", reference) == (
        "http://127.0.0.1:5000/#/models/pair-classifier/versions/4"
    )
    assert mlflow_model_link("sqlite:///mlflow.db", reference) is None  # no UI to link to
