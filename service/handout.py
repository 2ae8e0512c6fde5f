"""POST /v1/handout: the body of /v1/recommendations, answered as a printable HTML page for
the patient: the ranked forms with how much to take, when to take them around their other
medicines, the caveats in plain language, and when to see a doctor. English or German, like
every answer; every word on the page comes from data/ (the answer, texts.csv, ui.csv)."""

from __future__ import annotations

from functools import cache

from flask import Response, current_app, render_template
from flask.views import MethodView

from models import vocabulary as vocab
from service.parser import Blueprint
from service.recommendations import recommend
from service.schemas import RecommendationRequestSchema
from service.widget import UI_TEXTS_PATH, load_ui_texts

blp = Blueprint("handout", __name__, url_prefix="/v1", description="A printable page for the patient.")

# The patient-facing texts the page needs from the knowledge base's texts.csv.
HANDOUT_TEXT_KEYS = ("how_to_take", "see_clinician")


class UiTextError(LookupError):
    """data/locales/ui.csv lacks a text; the message names the key and the locale."""


@cache
def ui_texts() -> dict[str, dict[str, str]]:
    """{locale: {key: text}} from data/locales/ui.csv, read once (the widget's loader, which
    refuses a key without a text in every locale)."""
    return load_ui_texts()


def ui_text(key: str, locale: str, **values) -> str:
    """One interface text in ``locale``, with ``{name}`` placeholders filled in."""
    text = ui_texts().get(locale, {}).get(key)
    if text is None:
        raise UiTextError(f"{UI_TEXTS_PATH.name} has no '{key}' text in '{locale}'")
    return text.format(**values) if values else text


def knowledge_text(key: str, locale: str) -> str:
    texts = current_app.extensions["formwise"].knowledge_base.texts[key]
    return texts.get(locale) or texts[vocab.DEFAULT_LOCALE]


@blp.route("/handout")
class Handout(MethodView):
    @blp.arguments(RecommendationRequestSchema())
    @blp.alt_response(200, success=True, content_type="text/html",
                      description="A self-contained HTML page with a print stylesheet.")
    def post(self, body):
        """A printable page for the patient, from the same body as /v1/recommendations.

        The page lists the ranked forms with the daily amount in mg and in tablets or
        capsules, how and when to take magnesium (the timing plan when options.schedule is
        given), the caveats and interactions in plain language, and when to see a doctor.
        options.locale picks English or German; Content-Language says which was used."""
        (answer,), locale = recommend([body["profile"]], {**body["options"], "explain": True})
        page = render_template(
            "handout.html", answer=answer, locale=locale,
            t=lambda key, **values: ui_text(key, locale, **values),
            how_to_take=knowledge_text("how_to_take", locale),
            see_clinician=knowledge_text("see_clinician", locale),
        )
        return Response(page, mimetype="text/html", headers={"Content-Language": locale})
