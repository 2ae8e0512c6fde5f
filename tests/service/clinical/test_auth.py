"""The CDS client JWT check (service/clinical/auth.py): only trusted EHRs, with fresh tokens
signed for this service, may call the CDS Hooks services once trusted clients are set."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from limits.storage import MemoryStorage

from formwise.service.app import create_app
from formwise.service.clinical import auth as cds_auth
from formwise.service.clinical.auth import TokensInDatabase, TokensInLimitStorage, TrustedClients, TrustFileError
from formwise.service.store import queries as storage
from formwise.service.store import tables
from formwise.service.store.database import engine_of
from tests.service.clinical.test_hooks import SERVICE, hook_body, prefetch

ISSUER = "https://ehr.example.org"
REDIS_URL = "redis://127.0.0.1:6379/0"
AUDIENCE = "http://localhost" + SERVICE
EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
STRANGER_KEY = ec.generate_private_key(ec.SECP384R1())


def public_jwk(private_key, kid: str) -> dict:
    algorithm = jwt.algorithms.ECAlgorithm if isinstance(private_key, ec.EllipticCurvePrivateKey) \
        else jwt.algorithms.RSAAlgorithm
    return {**algorithm.to_jwk(private_key.public_key(), as_dict=True), "kid": kid}


def trust_file(tmp_path, clients) -> str:
    path = tmp_path / "trusted_cds_clients.json"
    path.write_text(json.dumps({"clients": clients}))
    return str(path)


@pytest.fixture()
def trusted(tmp_path):
    """An app trusting one EHR with an EC (P-384) and an RSA key, and a client id list."""
    path = trust_file(tmp_path, [{"iss": ISSUER, "sub": ["ehr-client"],
                                  "jwks": {"keys": [public_jwk(EC_KEY, "ec-1"), public_jwk(RSA_KEY, "rsa-1")]}}])
    return create_app({"TESTING": True, "FORMWISE_CDS_TRUSTED_CLIENTS": path}).test_client()


def token(key=EC_KEY, algorithm="ES384", kid="ec-1", **overrides) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "ehr-client", "aud": AUDIENCE, "iat": now, "exp": now + 300,
              "jti": str(uuid.uuid4())}
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def call(client, bearer: str | None, path: str = SERVICE, body=None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return client.post(path, json=body or hook_body(prefetch()), headers=headers)


def refused(response, words: str) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert words in response.get_json()["detail"]


def test_a_fresh_token_of_a_trusted_client_is_let_through(trusted):
    assert call(trusted, token()).status_code == 200
    assert call(trusted, token(RSA_KEY, "RS384", "rsa-1")).status_code == 200
    assert call(trusted, token(kid=None)).status_code == 200  # no kid: each key of the issuer is tried
    feedback = feedback_on(call(trusted, token()))
    # feedback goes to <endpoint>/feedback: a token for the endpoint or for that URL will do
    assert call(trusted, token(), SERVICE + "/feedback", feedback).status_code == 200
    assert call(trusted, token(aud=AUDIENCE + "/feedback"), SERVICE + "/feedback", feedback).status_code == 200


def test_discovery_and_preflights_stay_open(trusted):
    assert trusted.get("/cds-services").status_code == 200
    assert trusted.options(SERVICE, headers={"Origin": "https://sandbox.cds-hooks.org",
                                             "Access-Control-Request-Method": "POST"}).status_code < 400


@pytest.mark.parametrize(("make_bearer", "words"), [
    (lambda: None, "Authorization: Bearer"),
    (lambda: "not-a-jwt", "not a JWT"),
    (lambda: token(STRANGER_KEY), "signature does not match"),
    (lambda: token(iss="https://other-ehr.example.org"), "issuer (iss) is not a trusted"),
    (lambda: token(kid="unknown-key"), "key id (kid)"),
    (lambda: token(aud="https://elsewhere.example.org/cds-services/x"), "audience (aud)"),
    (lambda: token(exp=int(time.time()) - 600, iat=int(time.time()) - 900), "expired"),
    (lambda: token(exp=int(time.time()) + 3600), "more than 5 minutes ahead"),
    (lambda: token(iat=int(time.time()) + 600), "not valid yet"),
    (lambda: token(jti=None), "'jti'"),
    (lambda: token(sub="another-client"), "subject (sub)"),
    (lambda: jwt.encode({"iss": ISSUER, "aud": AUDIENCE}, "a shared secret of thirty-two bytes!", algorithm="HS256"),
     "signed with one of"),
])
def test_calls_without_a_valid_trusted_token_are_refused_saying_why(trusted, make_bearer, words):
    refused(call(trusted, make_bearer()), words)  # tokens made now: a slow run cannot expire them first


def test_a_public_key_cannot_be_used_as_a_shared_secret(trusted):
    """The classic forgery: an HS256 token whose HMAC key is the issuer's public key (which
    anyone may have), made by hand since PyJWT itself refuses to sign so."""
    public_pem = EC_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    segments = [jwt.utils.base64url_encode(json.dumps(part).encode()) for part in (
        {"alg": "HS256", "typ": "JWT", "kid": "ec-1"},
        {"iss": ISSUER, "sub": "ehr-client", "aud": AUDIENCE, "iat": now, "exp": now + 60, "jti": "forged"})]
    signing_input = b".".join(segments)
    signature = jwt.utils.base64url_encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    refused(call(trusted, (signing_input + b"." + signature).decode()), "signed with one of")


def test_a_token_is_good_for_one_call_only(trusted):
    once = token()
    assert call(trusted, once).status_code == 200
    refused(call(trusted, once), "used before")


def test_behind_a_proxy_the_audience_is_the_public_url(tmp_path):
    path = trust_file(tmp_path, [{"iss": ISSUER, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1")]}}])
    client = create_app({"TESTING": True, "FORMWISE_CDS_TRUSTED_CLIENTS": path,
                         "FORMWISE_CDS_PUBLIC_URL": "https://formwise.example.org/"}).test_client()
    refused(call(client, token()), "audience (aud)")
    assert call(client, token(aud="https://formwise.example.org" + SERVICE)).status_code == 200


def test_without_trusted_clients_the_services_stay_open(client):
    assert call(client, None).status_code == 200


def feedback_on(response) -> dict:
    """Feedback overriding the first card of a hook response (feedback is taken only on
    cards this service issued)."""
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"feedback": [{"card": response.get_json()["cards"][0]["uuid"], "outcome": "overridden",
                          "outcomeTimestamp": "2026-12-07T10:00:00Z"}]}


FEEDBACK = {"feedback": [{"card": "7c1d4a3e-0000-4000-8000-000000000000", "outcome": "overridden",
                          "outcomeTimestamp": "2026-12-07T10:00:00Z"}]}


def test_where_api_keys_are_required_and_no_client_is_trusted_every_call_is_refused(caplog):
    """Open CDS services would answer anyone without a key that every /v1 call needs."""
    cds_auth._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="formwise.cds"):
        client = create_app({"TESTING": True, "FORMWISE_REQUIRE_API_KEY": "1"}).test_client()
    assert "refuse every call" in caplog.text and "FORMWISE_CDS_OPEN" in caplog.text
    refused(call(client, None), "trusts no CDS client")
    refused(call(client, token()), "trusts no CDS client")  # well signed, but nobody is trusted
    refused(call(client, None, SERVICE + "/feedback", FEEDBACK), "trusts no CDS client")
    assert client.get("/cds-services").status_code == 200  # discovery stays open


@pytest.mark.parametrize("where", ["config", "environment"])
def test_a_gateway_that_checks_the_jwt_can_keep_them_open_beside_required_keys(monkeypatch, where):
    settings = {"TESTING": True, "FORMWISE_REQUIRE_API_KEY": "1"}
    if where == "config":
        settings["FORMWISE_CDS_OPEN"] = "1"
    else:
        monkeypatch.setenv("FORMWISE_CDS_OPEN", "yes")
    client = create_app(settings).test_client()
    assert call(client, None, SERVICE + "/feedback", feedback_on(call(client, None))).status_code == 200


@pytest.mark.parametrize(("clients", "field"), [
    ([], "clients"),
    (["https://ehr.example.org"], "clients[0]"),
    ([{"jwks": {"keys": [public_jwk(EC_KEY, "k")]}}], "clients[0].iss"),
    ([{"iss": ISSUER, "jwks": {"keys": []}}], "clients[0].jwks.keys"),
    ([{"iss": ISSUER, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}], "clients[0].jwks.keys[0].kty"),
    ([{"iss": ISSUER, "jwks": {"keys": [{**public_jwk(EC_KEY, "k"), "d": "private"}]}}], "clients[0].jwks.keys[0].d"),
    ([{"iss": ISSUER, "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "x": "broken"}]}}], "clients[0].jwks.keys[0]"),
    ([{"iss": ISSUER, "sub": [], "jwks": {"keys": [public_jwk(EC_KEY, "k")]}}], "clients[0].sub"),
    ([{"iss": ISSUER, "jwks": {"keys": [public_jwk(EC_KEY, "k")]}}] * 2, "clients[1].iss"),
])
def test_a_malformed_trust_file_stops_start_up_naming_the_field(tmp_path, clients, field):
    path = trust_file(tmp_path, clients)
    with pytest.raises(TrustFileError) as raised:
        create_app({"TESTING": True, "FORMWISE_CDS_TRUSTED_CLIENTS": path})
    assert str(raised.value).startswith(f"{path}: {field}: ")


def test_a_missing_or_unreadable_trust_file_stops_start_up(tmp_path):
    with pytest.raises(TrustFileError, match="cannot be read as JSON"):
        TrustedClients.from_file(tmp_path / "absent.json", TokensInLimitStorage(MemoryStorage()))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TrustFileError, match="cannot be read as JSON"):
        TrustedClients.from_file(tmp_path / "bad.json", TokensInLimitStorage(MemoryStorage()))


def test_with_redis_a_token_used_on_one_worker_is_refused_on_another(tmp_path):
    """Two apps sharing REDIS_URL stand for two gunicorn workers (or two instances)."""
    path = trust_file(tmp_path, [{"iss": ISSUER, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1")]}}])
    settings = {"TESTING": True, "FORMWISE_CDS_TRUSTED_CLIENTS": path, "REDIS_URL": REDIS_URL}
    first, second = (create_app(settings).test_client() for _ in range(2))
    once = token()
    assert call(first, once).status_code == 200
    refused(call(second, once), "used before")
    assert call(second, token()).status_code == 200


def test_without_redis_a_token_used_on_one_worker_is_refused_on_another(tmp_path, database_url):
    """Two apps on one database (the SQLite file a host's workers share, or PostgreSQL)
    stand for two gunicorn workers: the used token ids live in the database."""
    path = trust_file(tmp_path, [{"iss": ISSUER, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1")]}}])
    settings = {"TESTING": True, "FORMWISE_CDS_TRUSTED_CLIENTS": path, "DATABASE_URL": database_url}
    apps = [create_app(settings) for _ in range(2)]
    try:
        assert all(isinstance(app.extensions["formwise_cds_trust"].used_tokens, TokensInDatabase) for app in apps)
        first, second = (app.test_client() for app in apps)
        once = token()
        assert call(first, once).status_code == 200
        refused(call(second, once), "used before")
        refused(call(first, once), "used before")
        assert call(second, token()).status_code == 200
    finally:
        for app in apps:
            engine_of(app).dispose()


def test_used_token_ids_are_forgotten_once_their_tokens_expire(db_app):
    with db_app.app_context():
        assert storage.record_token_use("a" * 64, forget_after=1_000, now=900)
        assert not storage.record_token_use("a" * 64, forget_after=1_000, now=950)
        assert storage.record_token_use("b" * 64, forget_after=2_000, now=1_500)  # forgets "a"
        with engine_of(db_app).connect() as connection:
            kept = set(connection.execute(sa.select(tables.CdsUsedToken.digest)).scalars())
    assert "b" * 64 in kept and "a" * 64 not in kept


def test_an_unreachable_token_store_is_a_503_not_a_pass(tmp_path):
    path = trust_file(tmp_path, [{"iss": ISSUER, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1")]}}])
    client = create_app({"TESTING": True, "FORMWISE_CDS_TRUSTED_CLIENTS": path,
                         "REDIS_URL": "redis://127.0.0.1:9/0"}).test_client()  # nothing listens on port 9
    response = call(client, token())
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"


def forged_header(header: dict) -> str:
    """A token PyJWT would not write: the header as given, claims, a made-up signature."""
    def part(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part(header)}.{part({'iss': ISSUER, 'aud': AUDIENCE, 'jti': str(uuid.uuid4())})}.c2lnbmF0dXJl"


@pytest.mark.parametrize(("signed", "expected"), [
    (lambda: token(RSA_KEY, "RS256", kid=None), 200),  # no kid: the issuer's RSA key is found by the algorithm
    (lambda: token(RSA_KEY, "PS384", kid=None), 200),
    (lambda: token(EC_KEY, "ES384", kid="rsa-1"), 401),  # the kid names a key of the other type
    (lambda: token(RSA_KEY, "RS256", kid="ec-1"), 401),
    (lambda: token(ec.generate_private_key(ec.SECP256R1()), "ES256", kid=None), 401),  # the P-384 key cannot
    (lambda: forged_header({"alg": "RS256", "kid": ["rsa-1"]}), 401),  # a kid that is not a string
    (lambda: forged_header({"alg": "ES384", "kid": {"$ne": ""}}), 401),
])
def test_keys_are_chosen_by_kid_and_algorithm_and_a_mismatch_is_a_401_never_a_500(trusted, signed, expected):
    response = call(trusted, signed())
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected == 401:
        assert response.mimetype == "application/problem+json"
