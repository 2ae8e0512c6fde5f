"""The storage functions other parts build on: outcomes (issue 6) and CDS feedback (issue 5),
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from formwise.service.store import queries as storage


def test_outcomes_round_trip_without_profile_data(db_app):
    recommendation_id = str(uuid.uuid4())
    with db_app.app_context():
        before = len(storage.list_outcomes())
        first = storage.record_outcome(recommendation_id, "glycinate", tolerated=True, helpful=4)
        second = storage.record_outcome(recommendation_id, "citrate", tolerated=False)
        stored = storage.list_outcomes()[before:]
    assert [item["id"] for item in stored] == [first, second]
    assert stored[0] | {"created_at": None} == {
        "id": first, "recommendation_id": recommendation_id, "form": "glycinate", "tolerated": True, "helpful": 4,
        "created_at": None, "shop_id": None}
    assert stored[1]["helpful"] is None and stored[1]["tolerated"] is False
    assert all(item["created_at"].tzinfo is not None for item in stored)
    assert abs(stored[0]["created_at"] - dt.datetime.now(dt.UTC)) < dt.timedelta(hours=1)


@pytest.mark.parametrize(("arguments", "message"), [
    (("not-a-uuid", "glycinate"), "badly formed"),
    ((str(uuid.uuid4()), "glycinate", True, 6), "helpful"),
    ((str(uuid.uuid4()), "glycinate", True, True), "helpful"),
    ((str(uuid.uuid4()), "glycinate", "yes"), "tolerated"),
])
def test_a_malformed_outcome_is_refused(db_app, arguments, message):
    with db_app.app_context(), pytest.raises(ValueError, match=message):
        storage.record_outcome(*arguments)


def test_cds_feedback_round_trip(db_app):
    card = str(uuid.uuid4())
    with db_app.app_context():
        accepted = storage.record_cds_feedback(card, "accepted")
        overridden = storage.record_cds_feedback(card, "overridden", "patient-declined")
        stored = [item for item in storage.list_cds_feedback() if item["card_uuid"] == card]
    assert [(item["id"], item["outcome"], item["override_reason_code"]) for item in stored] == [
        (accepted, "accepted", None), (overridden, "overridden", "patient-declined")]


@pytest.mark.parametrize(("arguments", "message"), [
    ((str(uuid.uuid4()), "ignored"), "outcome"),
    ((str(uuid.uuid4()), "accepted", "some-code"), "only given"),
    (("card-1", "accepted"), "badly formed"),
])
def test_malformed_cds_feedback_is_refused(db_app, arguments, message):
    with db_app.app_context(), pytest.raises(ValueError, match=message):
        storage.record_cds_feedback(*arguments)
