"""The embeddable widget: ``GET /widget.js`` defines ``<formwise-advisor>``, and ``GET /demo``
shows it on a page.

A shop adds one script tag and one element; there is no build step. The script is the
static file ``service/shops/static/widget.js`` with the interface texts (every ``widget.*`` key of
``data/locales/ui.csv``, in English and German) and the contract's vocabulary written into
it when the app starts, so it makes no extra request for them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import orjson
from flask import Blueprint, Flask, Response, current_app, render_template, request

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.ui_texts import UI_TEXTS_PATH, UiTextsError, load_ui_texts
from formwise.service.api.errors import problem_from_body, validation_problem_body

blp = Blueprint("widget", __name__, template_folder="templates")

WIDGET_SOURCE = Path(__file__).resolve().parent / "static" / "widget.js"
WIDGET_KEY_PREFIX = "widget."
TEXTS_PLACEHOLDER = "/*FORMWISE_TEXTS*/{}"
VOCABULARY_PLACEHOLDER = "/*FORMWISE_VOCABULARY*/{}"
WIDGET_CACHE_SECONDS = 300
PUBLISHABLE_KEY_PATTERN = re.compile(r"^pk_[A-Za-z0-9_-]{10,100}$")
WIDGET_MODES = ("full", "compact")  # the element's mode attribute; full is the default


def widget_vocabulary() -> dict[str, list[str]]:
    return {"sexes": list(vocab.SEXES), "conditions": list(vocab.CONDITIONS), "goals": list(vocab.GOALS),
            "locales": list(vocab.LOCALES), "default_locale": vocab.DEFAULT_LOCALE}


def required_widget_keys() -> list[str]:
    """Labels the questionnaire builds from the vocabulary: each must have its texts."""
    return ([f"widget.sex.{word}" for word in vocab.SEXES] + [f"widget.condition.{word}" for word in vocab.CONDITIONS]
            + [f"widget.goal.{word}" for word in vocab.GOALS])


def _script_json(value) -> str:
    """JSON that is also safe inside a script: no ``</script>`` or ``<!--`` can close it."""
    return orjson.dumps(value).decode().replace("<", "\\u003c")


def build_widget_script(texts: dict[str, dict[str, str]]) -> str:
    widget_texts = {locale: {key: text for key, text in entries.items() if key.startswith(WIDGET_KEY_PREFIX)}
                    for locale, entries in texts.items()}
    missing = [key for key in required_widget_keys() if key not in widget_texts[vocab.DEFAULT_LOCALE]]
    if missing:
        raise UiTextsError(f"{UI_TEXTS_PATH.name}: no texts for {', '.join(missing)}")
    source = WIDGET_SOURCE.read_text(encoding="utf-8")
    for placeholder in (TEXTS_PLACEHOLDER, VOCABULARY_PLACEHOLDER):
        if source.count(placeholder) != 1:
            raise RuntimeError(f"{WIDGET_SOURCE.name} must hold {placeholder} exactly once")
    return (source.replace(TEXTS_PLACEHOLDER, _script_json(widget_texts))
            .replace(VOCABULARY_PLACEHOLDER, _script_json(widget_vocabulary())))


@blp.get("/widget.js")
def widget_script():
    script, etag = current_app.extensions["formwise_widget"]
    response = Response(script, mimetype="text/javascript")
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = WIDGET_CACHE_SECONDS
    # Shops that isolate their pages (COEP) may still load the script from this origin.
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response.make_conditional(request)


@blp.get("/demo")
def demo():
    """The widget on a page. ``?shop_key=pk_...`` shows a shop's products (its origins must
    include this server's); ``?locale=de`` switches the language; ``?mode=compact`` shows
    compact mode."""
    shop_key = request.args.get("shop_key", "")
    locale = request.args.get("locale", vocab.DEFAULT_LOCALE)
    mode = request.args.get("mode", WIDGET_MODES[0])
    messages = {}
    if shop_key and not PUBLISHABLE_KEY_PATTERN.match(shop_key):
        messages["shop_key"] = ["Must be a publishable key (pk_...); never put a secret key in a page."]
    if locale not in vocab.LOCALES:
        messages["locale"] = ["Must be one of: " + ", ".join(vocab.LOCALES) + "."]
    if mode not in WIDGET_MODES:
        messages["mode"] = ["Must be one of: " + ", ".join(WIDGET_MODES) + "."]
    if messages:
        return problem_from_body(validation_problem_body(messages))
    return render_template("demo.html", shop_key=shop_key, locale=locale, locales=vocab.LOCALES, mode=mode,
                           modes=WIDGET_MODES)


def init_app(app: Flask, api=None) -> None:
    script = build_widget_script(load_ui_texts())
    app.extensions["formwise_widget"] = (script, hashlib.sha256(script.encode()).hexdigest()[:32])
