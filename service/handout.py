"""POST /v1/handout: the body of /v1/recommendations, answered as a printable HTML page for
the patient: the ranked forms with how much to take, when to take them around their other
medicines, the caveats in plain language, and when to see a doctor. English or German, like
every answer; every word on the page comes from data/ (the answer, texts.csv, ui.csv)."""

from __future__ import annotations

import base64
import hashlib
import os
from functools import cache

import marshmallow as ma
import orjson
from cryptography.fernet import Fernet, InvalidToken
from flask import Response, abort, current_app, render_template, request
from flask.views import MethodView

from models import vocabulary as vocab
from service.errors import problem
from service.parser import Blueprint
from service.recommendations import recommend
from service.schemas import ProfileSchema, RecommendationRequestSchema
from service.widget import UI_TEXTS_PATH, load_ui_texts

blp = Blueprint("handout", __name__, url_prefix="/v1", description="A printable page for the patient.")

# The patient-facing texts the page needs from the knowledge base's texts.csv.
HANDOUT_TEXT_KEYS = ("how_to_take", "see_clinician")
# How long a handout link on a CDS card opens the page (a setting; this is the default).
HANDOUT_LINK_HOURS = 24


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


def render_handout(profile: dict, options: dict) -> Response:
    """The handout page for one validated profile and the request's options."""
    (answer,), locale = recommend([profile], {**options, "explain": True})
    page = render_template(
        "handout.html", answer=answer, locale=locale,
        t=lambda key, **values: ui_text(key, locale, **values),
        how_to_take=knowledge_text("how_to_take", locale),
        see_clinician=knowledge_text("see_clinician", locale),
    )
    return Response(page, mimetype="text/html", headers={"Content-Language": locale})


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
        return render_handout(body["profile"], body["options"])


# ---- links to a patient's handout (on CDS cards) ------------------------------------------


def _link_cipher() -> Fernet:
    """The key of handout links: FORMWISE_SECRET_KEY, or a secret the service made for itself
    once in its database (shared by every worker)."""
    from service import storage

    secret = os.environ.get("FORMWISE_SECRET_KEY") or storage.app_secret("handout-links")
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(f"handout-links:{secret}".encode()).digest()))


def handout_link(profile: dict, locale: str) -> str:
    """An absolute link that opens this profile's handout for HANDOUT_LINK_HOURS. The profile
    travels encrypted in the link (the service stores no profile): the URL shows nothing of
    it, and request logs record only the endpoint."""
    token = _link_cipher().encrypt(orjson.dumps({"profile": profile, "locale": locale})).decode()
    return f"{request.url_root}v1/handout/{token}"


@blp.route("/handout/<string:token>")
class HandoutLink(MethodView):
    @blp.alt_response(200, success=True, content_type="text/html", description="The handout page.")
    def get(self, token):
        """The handout a CDS card links to; the link expires after a day."""
        hours = int(current_app.config.get("HANDOUT_LINK_HOURS") or os.environ.get("FORMWISE_HANDOUT_LINK_HOURS")
                    or HANDOUT_LINK_HOURS)
        try:
            content = orjson.loads(_link_cipher().decrypt(token.encode(), ttl=hours * 3600))
            profile = ProfileSchema().load(content["profile"])
        except (InvalidToken, ValueError, KeyError, TypeError, ma.ValidationError):
            abort(problem(404, "Not Found", "This handout link is unknown or has expired: open the card again.",
                          slug="handout-link-expired"))
        return render_handout(profile, {"limit": 3, "locale": content.get("locale", vocab.DEFAULT_LOCALE)})
