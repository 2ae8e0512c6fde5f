"""Which CDS clients may call the CDS Hooks services: the JWT check of CDS Hooks 2.0.

A CDS client (an EHR) signs a short-lived JWT with its private key and sends it as
``Authorization: Bearer``; the service checks it against the public keys of the clients it
trusts. The trusted clients are a JSON file the operator keeps (``FORMWISE_CDS_TRUSTED_CLIENTS``
or ``CDS_TRUSTED_CLIENTS``)::

    {"clients": [{"iss": "https://ehr.example.org",
                  "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "kid": "...", "x": "...", "y": "..."}]},
                  "sub": ["optional: the client ids allowed for this issuer"]}]}

Keys are never fetched from a URL named in the token (``jku``): a token cannot bring its
own trust. With no file configured, the services stay open for local use and the sandbox,
and start-up logs a warning; but where every /v1 call needs a shop's key
(``FORMWISE_REQUIRE_API_KEY``, the production setting) they refuse every call instead, since
they would otherwise answer anyone without a key, unless ``FORMWISE_CDS_OPEN`` says that a
gateway in front checks the JWT. A malformed file stops start-up with the file and the field named.

Checked on every POST to /cds-services (service calls and feedback; discovery and CORS
preflights stay open): an asymmetric algorithm, a key of the token's issuer (by ``kid``
when the token names one), the signature, ``aud`` = the URL called (or the service's own
URL, for feedback), ``exp`` at most five minutes ahead, ``iat``, ``jti`` not seen before
by any worker (the used ids live in Redis when REDIS_URL is set, else in the service's
database), and ``sub`` when the file lists subjects."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from flask import Flask, current_app, request
from limits.storage import Storage, storage_from_string

from formwise.service.settings import setting, settings_of
from formwise.service.shops import keys as shops
from formwise.service.shops.limits import storage_uri
from formwise.service.store import queries as storage

log = logging.getLogger("formwise.cds")

TRUSTED_CLIENTS_ENV = "FORMWISE_CDS_TRUSTED_CLIENTS"
PUBLIC_URL_ENV = "FORMWISE_CDS_PUBLIC_URL"
OPEN_ENV = "FORMWISE_CDS_OPEN"  # a gateway in front checks the JWT: leave the services open
# CDS Hooks asks clients for ES384 or RS384; the other asymmetric JWS algorithms are
# accepted too. Never HMAC (a public key must not double as a shared secret) or "none".
ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
# The JWK key type each algorithm family signs with.
KEY_TYPE_OF_ALGORITHM = {"ES": "EC", "RS": "RSA", "PS": "RSA"}
LEEWAY_SECONDS = 60
# CDS Hooks: the token's expiry SHOULD be no more than five minutes after it is issued.
LONGEST_LIFETIME_SECONDS = 5 * 60
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")


class TrustFileError(ValueError):
    """The trusted-clients file cannot be used; the message names the file and the field."""

    def __init__(self, path: Path, where: str, message: str):
        super().__init__(f"{path}: {where}: {message}")


class ClientNotTrusted(Exception):
    """Why a call was refused, in words that repeat nothing of the token."""


class ReplayCheckUnavailable(Exception):
    """The store of used token ids cannot be reached: the call cannot be checked now."""


@dataclass
class TrustedClient:
    issuer: str
    keys: list[jwt.PyJWK]
    subjects: frozenset[str] | None  # None: any subject


@dataclass
class TokensInLimitStorage:
    """Used token ids in the rate limits' storage (service/shops/limits.py): Redis, shared by every
    worker and instance, when REDIS_URL is set."""

    storage: Storage

    def first_use(self, digest: str, forget_after: int, now: float) -> bool:
        remembered_for = max(1, math.ceil(forget_after - now))  # whole seconds, as Redis takes them
        return self.storage.incr(f"formwise:cds-jti:{digest}", remembered_for) == 1


class TokensInDatabase:
    """Used token ids in the service's database: shared by every worker of a host (the
    SQLite file) or of every instance (PostgreSQL). A replayed token had been let through by
    whichever worker had not seen it, when each process kept its own."""

    def first_use(self, digest: str, forget_after: int, now: float) -> bool:
        return storage.record_token_use(digest, forget_after, now)


@dataclass
class TrustedClients:
    clients: dict[str, TrustedClient]
    # Where used token ids are remembered until the tokens expire.
    used_tokens: TokensInLimitStorage | TokensInDatabase

    @classmethod
    def from_file(cls, path: Path | str, used_tokens: TokensInLimitStorage | TokensInDatabase) -> TrustedClients:
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TrustFileError(path, "file", f"cannot be read as JSON ({error})") from None
        entries = document.get("clients") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not entries:
            raise TrustFileError(path, "clients", "must be a non-empty list of trusted clients")
        clients: dict[str, TrustedClient] = {}
        for position, entry in enumerate(entries):
            where = f"clients[{position}]"
            if not isinstance(entry, dict):
                raise TrustFileError(path, where, "must be an object with iss and jwks")
            issuer = entry.get("iss")
            if not isinstance(issuer, str) or not issuer:
                raise TrustFileError(path, f"{where}.iss", "must be the client's issuer, a non-empty string")
            if issuer in clients:
                raise TrustFileError(path, f"{where}.iss", f"'{issuer}' is listed twice")
            keys = (entry.get("jwks") or {}).get("keys") if isinstance(entry.get("jwks"), dict) else None
            if not isinstance(keys, list) or not keys:
                raise TrustFileError(path, f"{where}.jwks.keys", "must be a non-empty list of public JWKs")
            subjects = entry.get("sub")
            if subjects is not None and (not isinstance(subjects, list) or not subjects
                                         or not all(isinstance(s, str) and s for s in subjects)):
                raise TrustFileError(path, f"{where}.sub", "must be a non-empty list of client ids, or left out")
            clients[issuer] = TrustedClient(issuer, [_public_key(path, f"{where}.jwks.keys[{i}]", key)
                                                     for i, key in enumerate(keys)],
                                            frozenset(subjects) if subjects else None)
        return cls(clients, used_tokens)

    def check(self, authorization: str | None, audiences: set[str], now: float | None = None) -> dict:
        """The token's claims when a trusted client signed it for this call; otherwise
        ClientNotTrusted saying why."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ClientNotTrusted("Send the CDS client's JWT as 'Authorization: Bearer <token>'.")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise ClientNotTrusted("The bearer token is not a JWT.") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise ClientNotTrusted(f"The token must be signed with one of {', '.join(ALGORITHMS)}.")
        client = self.clients.get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
        if client is None:
            raise ClientNotTrusted("The token's issuer (iss) is not a trusted CDS client.")
        claims = self._verified_claims(token, client, header, algorithm, audiences)
        now = time.time() if now is None else now
        if claims["exp"] - now > LONGEST_LIFETIME_SECONDS + LEEWAY_SECONDS:
            raise ClientNotTrusted(f"The token expires more than {LONGEST_LIFETIME_SECONDS // 60} minutes ahead.")
        if client.subjects is not None and claims.get("sub") not in client.subjects:
            raise ClientNotTrusted("The token's subject (sub) is not a client id this issuer may use.")
        self._refuse_replay(client.issuer, str(claims["jti"]), float(claims["exp"]), now)
        return claims

    def _verified_claims(self, token: str, client: TrustedClient, header: dict, algorithm: str,
                         audiences: set[str]) -> dict:
        kid = header.get("kid")
        family = KEY_TYPE_OF_ALGORITHM[algorithm[:2]]
        candidates = [key for key in client.keys if kid is None or key.key_id == kid]
        if not candidates:
            raise ClientNotTrusted("No trusted key of this issuer has the token's key id (kid).")
        # A key of another type than the algorithm's cannot verify it: PyJWT would raise
        # inside (not a JWT error) for some pairs, so they are never tried.
        candidates = [key for key in candidates if key.key_type == family]
        if not candidates:
            raise ClientNotTrusted(f"No trusted {family} key of this issuer matches the token's algorithm "
                                   f"({algorithm}).")
        refusal = "The token's signature does not match a trusted key of its issuer."
        for key in candidates:
            try:
                return jwt.decode(token, key.key, algorithms=[algorithm], audience=sorted(audiences),
                                  issuer=client.issuer, leeway=LEEWAY_SECONDS,
                                  options={"require": list(REQUIRED_CLAIMS)})
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidKeyError:  # a key of another type than the algorithm's
                continue
            except jwt.ExpiredSignatureError:
                raise ClientNotTrusted("The token has expired.") from None
            except jwt.ImmatureSignatureError:
                raise ClientNotTrusted("The token is not valid yet (iat or nbf in the future).") from None
            except jwt.InvalidAudienceError:
                raise ClientNotTrusted("The token's audience (aud) is not the URL of this CDS service.") from None
            except jwt.MissingRequiredClaimError as error:
                raise ClientNotTrusted(f"The token has no '{error.claim}' claim.") from None
            except jwt.PyJWTError:
                raise ClientNotTrusted("The token cannot be verified.") from None
            except (TypeError, ValueError, AttributeError):  # a malformed token or key PyJWT did not foresee
                raise ClientNotTrusted("The token cannot be verified.") from None
        raise ClientNotTrusted(refusal)

    def _refuse_replay(self, issuer: str, token_id: str, expires: float, now: float) -> None:
        """A token id seen before (from this issuer, within its life) is refused."""
        digest = hashlib.sha256(f"{issuer}\0{token_id}".encode()).hexdigest()
        forget_after = math.ceil(expires + LEEWAY_SECONDS)  # then the expiry check refuses it anyway
        try:
            first_use = self.used_tokens.first_use(digest, forget_after, now)
        except Exception as error:  # the storage's own errors (a Redis or database that is down) vary
            raise ReplayCheckUnavailable(type(error).__name__) from None
        if not first_use:
            raise ClientNotTrusted("The token was used before (jti); send a fresh one with every call.")


def _public_key(path: Path, where: str, key) -> jwt.PyJWK:
    if not isinstance(key, dict):
        raise TrustFileError(path, where, "must be a JWK object")
    if key.get("kty") not in ("EC", "RSA", "OKP"):
        raise TrustFileError(path, f"{where}.kty", "must be EC, RSA or OKP: only public keys sign CDS clients' JWTs")
    if "d" in key:
        raise TrustFileError(path, f"{where}.d", "is a private key: the file must hold only the clients' public keys")
    try:
        return jwt.PyJWK(key)
    except jwt.PyJWTError as error:
        raise TrustFileError(path, where, f"is not a usable public JWK ({error})") from None


def public_base_url() -> str:
    """The base URL clients call (``FORMWISE_CDS_PUBLIC_URL``), ending in "/"; without the
    setting, the request's own, whose Host header the caller chooses: tokens' ``aud``, the
    card's source and its links are built on it."""
    public = setting(PUBLIC_URL_ENV)
    return (public.rstrip("/") + "/") if public else request.host_url


def audiences_of_this_call() -> set[str]:
    """The URLs a token for this call may name as ``aud``: the URL called and the service's
    own endpoint (feedback goes to ``<endpoint>/feedback``), on the public base URL when the
    operator set one (behind a proxy the service does not see the URL clients call, and the
    Host header it does see is the caller's to choose)."""
    called = public_base_url().rstrip("/") + request.path
    return {called, called.removesuffix("/feedback")}


class NoTrustedClients:
    """The trust of a service that requires API keys but was told of no CDS client: every
    call is refused, saying what the operator has to set."""

    def check(self, authorization: str | None, audiences: set[str], now: float | None = None) -> dict:
        raise ClientNotTrusted(f"This service trusts no CDS client yet: its operator names the trusted clients "
                               f"in {TRUSTED_CLIENTS_ENV}.")


def trusted_clients() -> TrustedClients | NoTrustedClients | None:
    """Whose JWTs the services accept; None when they are open to any caller."""
    return current_app.extensions.get("formwise_cds_trust")


def init_app(app: Flask, api=None) -> None:
    """Load the trusted CDS clients once, at start-up: a bad file stops the service here."""
    configured = settings_of(app)[TRUSTED_CLIENTS_ENV]
    if configured:
        uri = storage_uri(app)  # the rate limits' storage: Redis when REDIS_URL is set
        used_tokens = TokensInDatabase() if uri.startswith("memory://") else TokensInLimitStorage(
            storage_from_string(uri))
        app.extensions["formwise_cds_trust"] = TrustedClients.from_file(configured, used_tokens)
    elif shops.key_required(app) and not settings_of(app)[OPEN_ENV]:
        app.extensions["formwise_cds_trust"] = NoTrustedClients()
        _warn_once(f"no trusted CDS clients configured ({TRUSTED_CLIENTS_ENV}) while API keys are required: "
                   f"the CDS Hooks services refuse every call (set {OPEN_ENV}=1 if a gateway checks the JWT)")
    else:
        _warn_once(f"no trusted CDS clients configured ({TRUSTED_CLIENTS_ENV}): "
                   "the CDS Hooks services accept calls without a JWT")


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)
