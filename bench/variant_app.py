"""Variants of the service for finding where HTTP time goes, chosen by FORMWISE_BENCH_VARIANT:

- ``canned``: no scoring and no answer building; every request gets a copy of one answer
  computed at start-up for the benchmark body, through the same app, parsing, validation
  and hooks. Its ratio to the bare floor is the most the service could reach if the engine
  and the answer dicts cost nothing.
- ``batch-only``: the profile batch (models/engine/features.py) is built, then the canned answer
  is sent: what turning the profile into columns costs under load.
- ``loop-arguments``: the batch is built and the scoring loop's arguments (the batch's
  columns and the engine's tables) are handed to a compiled function that returns at once:
  what crossing into numba costs, without the loop's own work or its outputs.
- ``score-only``: the profile batch is built and scored by the engine, then the canned
  answer is sent: the drop from ``canned`` is what the engine costs under load.
- ``lean``: the real service without its request hooks (key check, CORS, rate limit,
  body checks) and without the WSGI observability layer (request id, security headers,
  metrics, log line): the most that trimming those could ever give.
- ``timed``: the real service, with the thread CPU time of building the batch, scoring and
  building the answers summed per worker and written to its stderr every 3,000 answers.

    FORMWISE_BENCH_VARIANT=canned .venv/bin/python bench/bench_http.py --service-app variant_app:app \\
        --service-dir bench --duration 10 --rounds 3

Only for measuring; nothing here is part of the service."""

import gc
import os
import sys
import time
from pathlib import Path

import numba
import orjson

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from formwise.service.api.schemas import ProfileSchema  # noqa: E402
from formwise.service.app import create_app  # noqa: E402

VARIANT = os.environ.get("FORMWISE_BENCH_VARIANT", "canned")
BODY = PROJECT.parent / "shared" / "bench" / "request.json"

app = create_app()
_recommender = app.extensions["formwise"]
_real_recommend = _recommender.recommend
_profile = ProfileSchema().load(orjson.loads(BODY.read_bytes())["profile"])
_canned = _real_recommend([_profile], limit=3)[0]


def _canned_answers(profiles, **options):
    return [dict(_canned) for _ in profiles]


def _batch_then_canned(profiles, **options):
    _recommender.batch(profiles)
    return _canned_answers(profiles)


@numba.njit(cache=True)
def _take_arguments(whole_numbers, egfr, flags, floats, small, ints, layout):
    return egfr.shape[0]


def _loop_arguments(batch):
    return (batch.whole_numbers, batch.egfr, batch.flags, *_recommender.engine.packed_tables)


def _arguments_then_canned(profiles, **options):
    _take_arguments(*_loop_arguments(_recommender.batch(profiles)))
    return _canned_answers(profiles)


def _score_then_canned(profiles, **options):
    _recommender.score(_recommender.batch(profiles))
    return _canned_answers(profiles)


_spent = {"batch": 0, "score": 0, "answers": 0}
_answered = [0]


def _timed(name, function):
    def timed(*args, **kwargs):
        started = time.thread_time_ns()
        result = function(*args, **kwargs)
        _spent[name] += time.thread_time_ns() - started
        if name == "answers":
            _answered[0] += 1
            if _answered[0] % 3000 == 0:
                per = {part: round(total / _answered[0] / 1000, 1) for part, total in _spent.items()}
                print(f"variant timed pid {os.getpid()} answers {_answered[0]} thread CPU us per request {per}",
                      file=sys.stderr, flush=True)
        return result

    return timed


if VARIANT == "canned":
    _recommender.recommend = _canned_answers
elif VARIANT == "batch-only":
    _recommender.recommend = _batch_then_canned
elif VARIANT == "loop-arguments":
    _take_arguments(*_loop_arguments(_recommender.batch([_profile])))  # compiled before the workers fork
    _recommender.recommend = _arguments_then_canned
elif VARIANT == "score-only":
    _recommender.recommend = _score_then_canned
elif VARIANT == "lean":
    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        hooks.clear()
    app.wsgi_app = app.wsgi_app.wsgi_app  # the Flask app inside RequestObservability
elif VARIANT == "timed":
    _recommender.batch = _timed("batch", _recommender.batch)
    _recommender.engine.score = _timed("score", _recommender.engine.score)
    _recommender.answers.answers = _timed("answers", _recommender.answers.answers)
else:
    raise SystemExit("FORMWISE_BENCH_VARIANT must be canned, batch-only, loop-arguments, score-only, lean or timed, "
                     f"not {VARIANT!r}")

gc.freeze()  # as wsgi.py does, so that the variants differ from the service only as described
