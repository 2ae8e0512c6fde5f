"""The service with its engine and answer building taken out: every request gets a copy of
one answer computed at start-up, through the same Flask app, parsing, validation and hooks.

    .venv/bin/python bench/bench_http.py --service-app canned_answer:app --service-dir bench

Only for measuring: the throughput of this app against the bare floor is the ceiling the
service could reach if scoring and answer building cost nothing, so the gap between it and
the real service is what the engine and the answer dicts cost under load."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import create_app  # after the project folder is on the path

app = create_app()
_recommender = app.extensions["formwise"]
_answer = _recommender.recommend([{"age": 54}], limit=3)[0]
_recommender.recommend = lambda profiles, **options: [dict(_answer) for _ in profiles]
