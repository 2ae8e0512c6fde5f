"""GET /v1/forms and /v1/forms/{id}: the knowledge base's form table, every attribute with
its value and source id, and the citations those ids resolve to."""

from __future__ import annotations

from dataclasses import asdict

from flask import abort, current_app
from flask.views import MethodView

from formwise.models.knowledge.base import Form, KnowledgeBase
from formwise.service.api.answer_schemas import FormListSchema, FormSchema
from formwise.service.api.parsing import Blueprint
from formwise.service.api.responses import json_response

blp = Blueprint("forms", __name__, url_prefix="/v1", description="The knowledge base's magnesium forms.")


def form_record(form: Form, knowledge_base: KnowledgeBase) -> dict:
    sources = {form.source}
    sources.update(value.source for value in form.attributes.values())
    sources.update(evidence.source for evidence in form.evidence.values())
    return {
        "id": form.id,
        "name": form.name,
        "names": form.names,
        "salt": form.salt,
        "formula": form.formula,
        "hydrate": form.hydrate,
        "laxative": form.laxative,
        "source": form.source,
        "note": form.note,
        "attributes": {name: asdict(value) for name, value in form.attributes.items()},
        "evidence": {goal: asdict(evidence) for goal, evidence in form.evidence.items()},
        "citations": {source: asdict(knowledge_base.citations[source]) for source in sorted(sources)},
    }


def _knowledge_base() -> KnowledgeBase:
    return current_app.extensions["formwise"].knowledge_base


@blp.route("/forms")
class Forms(MethodView):
    @blp.alt_response(200, schema=FormListSchema, success=True, description="Every form in the knowledge base.")
    def get(self):
        """List the forms with their sourced attributes and evidence."""
        kb = _knowledge_base()
        return json_response(
            {"knowledge_base_version": kb.version, "forms": [form_record(form, kb) for form in kb.forms]}
        )


@blp.route("/forms/<string:form_id>")
class FormById(MethodView):
    @blp.alt_response(200, schema=FormSchema, success=True, description="One form.")
    @blp.alt_response(404, description="No form with that id.")
    def get(self, form_id):
        """One form with its sourced attributes and evidence."""
        kb = _knowledge_base()
        for form in kb.forms:
            if form.id == form_id:
                return json_response(form_record(form, kb))
        abort(404, description=f"No form '{form_id}'. Known forms: {', '.join(kb.form_ids)}.")
