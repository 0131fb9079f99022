"""The demo page: two text boxes and a button; the answer as a label with one bar per class,
and below it what `predict` would write for the pair, the truncation flag, the model version
and the command (and, with an MLflow server, the link) that traces it.

Gradio runs in this process on ``host:port``; it never makes a share link, sends no analytics
and uses the system's fonts, so the page loads without reaching beyond the machine.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import gradio as gr

from pair_classifier.demo.access import login_check
from pair_classifier.demo.scoring import LINEAGE_COMMAND, Answer, Scorer, mlflow_model_link
from pair_classifier.errors import PairClassifierError
from pair_classifier.predictor import PREDICTED_LABEL, PROBABILITY_PREFIX

logger = logging.getLogger(__name__)

TITLE = "pair-classifier demo"
API_NAME = "classify"  # the page's one endpoint (/gradio_api/call/classify)
ELEMENT_IDS = {  # what the browser test reads
    "text_a": "text-a",
    "text_b": "text-b",
    "button": "classify",
    "label": "prediction",
    "details": "details",
}
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web font to fetch
SYSTEM_MONO_FONTS = ["ui-monospace", "monospace"]
TEXT_LINES = 4
PROBABILITY_FORMAT = "{:.6f}"  # predict's PROBABILITY_DECIMALS
STOP_POLL_S = 0.5
WELCOME = "Type two texts and press **Classify**."
TRUNCATED_NOTE = (
    "true (a text has more tokens than the model reads; it was scored on its first tokens)"
)


def details_markdown(answer: Answer, tracking_uri: str | None) -> str:
    """The answer as `predict`'s columns, then the flag, the version and its lineage."""
    lines = [f"- {PREDICTED_LABEL}: {answer.label}"]
    lines += [
        f"- {PROBABILITY_PREFIX}{name}: {PROBABILITY_FORMAT.format(probability)}"
        for name, probability in answer.probabilities.items()
    ]
    lines.append(f"- truncated: {TRUNCATED_NOTE if answer.truncated else 'false'}")
    reference = answer.reference
    if reference is None:
        lines.append("- model version: none recorded (not the registered graph)")
    else:
        lines.append(f"- model version: {answer.model_version} of {answer.model_name}")
        lines.append(f"- lineage: `{LINEAGE_COMMAND} {reference}`")
        link = mlflow_model_link(tracking_uri, reference)
        if link is not None:
            lines.append(f"- in MLflow: [{reference}]({link})")
    return "\n".join(lines)


def build_page(scorer: Scorer, tracking_uri: str | None, max_text_chars: int) -> gr.Blocks:
    """The page's layout and its one event; errors in the input show as Gradio errors."""

    def classify(text_a: str, text_b: str) -> tuple[dict[str, float], str]:
        try:
            answer = scorer.score(text_a, text_b)
        except PairClassifierError as error:
            logger.info("refused or failed: %s", error)
            raise gr.Error(str(error)) from error
        return answer.probabilities, details_markdown(answer, tracking_uri)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        gr.Markdown(f"# {TITLE}\nAnswered by {scorer.source}.")
        with gr.Row():
            boxes = [
                gr.Textbox(
                    label=label,
                    lines=TEXT_LINES,
                    max_length=max_text_chars,
                    elem_id=ELEMENT_IDS[key],
                )
                for key, label in (("text_a", "First text"), ("text_b", "Second text"))
            ]
        button = gr.Button("Classify", variant="primary", elem_id=ELEMENT_IDS["button"])
        label = gr.Label(label="Predicted label", elem_id=ELEMENT_IDS["label"])
        details = gr.Markdown(WELCOME, elem_id=ELEMENT_IDS["details"])
        button.click(classify, inputs=boxes, outputs=[label, details], api_name=API_NAME)
    return page


def serve_page(
    page: gr.Blocks,
    host: str,
    port: int,
    token: str | None,
    user: str,
    token_env: str,
    on_ready: Callable[[str], None],
) -> None:
    """Run the page until SIGTERM or Ctrl-C, then close its server. With a ``token``, every
    request but the page's empty shell and Gradio's login form needs the session cookie that
    logging in as ``user`` with the token as password gives."""
    stop = threading.Event()
    handlers: dict[int, object] = {}
    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO_FONTS)
    try:
        page.queue(default_concurrency_limit=1)
        _, local_url, _ = page.launch(
            server_name=host,
            server_port=port,
            share=False,
            auth=None if token is None else login_check(user, token),
            auth_message=(
                None
                if token is None
                else f"User name: {user}. Password: the token in ${token_env}."
            ),
            prevent_thread_lock=True,
            quiet=True,
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            enable_monitoring=False,
            run_history=False,  # past texts are not kept in the browser
            theme=theme,
        )
        # after launch, so that nothing Gradio starts replaces them
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
        on_ready(f"{local_url} ({'login with the token' if token else 'no login'})")
        while not stop.wait(STOP_POLL_S):
            pass
        logger.info("stopping the page")
    finally:
        page.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
