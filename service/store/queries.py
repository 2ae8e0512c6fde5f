"""The small functions the rest of the service calls to use the tables (``tables``).

Nothing here holds a profile, a condition or a medicine: shops, their origins, hashed keys,
their products, recommendation ids with shop and time, shop events, and the outcome and
CDS-feedback records that carry only ids, form ids and codes. Every function opens its own
short transaction (``database.session_scope``) inside the current Flask app context.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from formwise.service.store.database import connection_scope, session_scope
from formwise.service.store.tables import (
    CDS_OUTCOMES,
    ApiKey,
    AppSecret,
    AuditEntry,
    CdsCard,
    CdsFeedback,
    CdsUsedToken,
    ControlProduct,
    Event,
    Outcome,
    Product,
    Recommendation,
    Shop,
    ShopOrigin,
    as_utc,
    utc_now,
)


class NotFoundError(LookupError):
    """A named shop, key or record does not exist; the message says which."""


# ---- shops and keys ---------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    """What a request's API key resolves to, detached from any session."""

    key_id: int
    kind: str
    prefix: str
    key_hash: str
    revoked: bool
    shop_id: int
    shop_name: str
    origins: tuple[str, ...]
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def add_shop(name: str, origins: list[str], keys: list[tuple[str, str, str]]) -> int:
    """A new shop with its origins and keys given as (kind, prefix, sha256); returns its id.
    Raises ValueError when the name is taken."""
    with session_scope() as session:
        if session.scalar(sa.select(Shop.id).where(Shop.name == name)) is not None:
            raise ValueError(f"A shop named '{name}' already exists.")
        shop = Shop(name=name, origins=[ShopOrigin(origin=origin) for origin in dict.fromkeys(origins)],
                    keys=[ApiKey(kind=kind, prefix=prefix, key_hash=key_hash) for kind, prefix, key_hash in keys])
        session.add(shop)
        session.flush()
        return shop.id


def shop_by_name(session, name: str) -> Shop:
    shop = session.scalar(sa.select(Shop).where(Shop.name == name))
    if shop is None:
        raise NotFoundError(f"No shop named '{name}'.")
    return shop


def shop_name(shop_id: int) -> str | None:
    with session_scope() as session:
        return session.scalar(sa.select(Shop.name).where(Shop.id == shop_id))


def shop_id_by_name(name: str) -> int:
    with session_scope() as session:
        return shop_by_name(session, name).id


def list_shops() -> list[dict]:
    """Every shop with its origins, keys (see shop_keys) and product count."""
    now = utc_now()
    with session_scope() as session:
        counts = dict(session.execute(sa.select(Product.shop_id, sa.func.count()).group_by(Product.shop_id)).all())
        shops = session.scalars(sa.select(Shop).order_by(Shop.name)).all()
        return [
            {
                "shop_id": shop.id,
                "name": shop.name,
                "created_at": shop.created_at.isoformat(),
                "origins": [item.origin for item in shop.origins],
                "keys": [_key_dict(key, now) for key in shop.keys],
                "products": counts.get(shop.id, 0),
            }
            for shop in shops
        ]


def add_origin(shop_name: str, origin: str) -> bool:
    """Adds an origin to a shop; False when it was already there."""
    with session_scope() as session:
        shop = shop_by_name(session, shop_name)
        if origin in {item.origin for item in shop.origins}:
            return False
        shop.origins.append(ShopOrigin(origin=origin))
        return True


def remove_origin(shop_name: str, origin: str) -> bool:
    """Removes an origin from a shop; False when it was not there."""
    with session_scope() as session:
        shop = shop_by_name(session, shop_name)
        for item in shop.origins:
            if item.origin == origin:
                shop.origins.remove(item)
                return True
        return False


def add_key(shop_id: int, kind: str, prefix: str, key_hash: str, name: str | None = None,
            expires_at: dt.datetime | None = None) -> None:
    with session_scope() as session:
        session.add(ApiKey(shop_id=shop_id, kind=kind, prefix=prefix, key_hash=key_hash, name=name,
                           expires_at=expires_at))


def expire_keys(shop_id: int, kind: str, until: dt.datetime, keep: str) -> list[str]:
    """Every key of this kind of the shop that is still in use (not revoked, not expiring
    earlier) stops at ``until``, except the one with hash ``keep``; returns their prefixes."""
    with session_scope() as session:
        keys = session.scalars(sa.select(ApiKey).where(
            ApiKey.shop_id == shop_id, ApiKey.kind == kind, ApiKey.revoked_at.is_(None), ApiKey.key_hash != keep,
            sa.or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > until))).all()
        for key in keys:
            key.expires_at = until
        return [key.prefix for key in keys]


def touch_key(key_id: int, now: dt.datetime) -> None:
    """Records that the key was used (the caller writes at most once an hour per key)."""
    with connection_scope() as connection:
        connection.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def shop_keys(shop_name: str) -> list[dict]:
    """The shop's keys: name, kind, prefix, created, last used, expiry and state."""
    now = utc_now()
    with session_scope() as session:
        shop = shop_by_name(session, shop_name)
        return [_key_dict(key, now) for key in shop.keys]


def _key_dict(key: ApiKey, now: dt.datetime) -> dict:
    expires = as_utc(key.expires_at) if key.expires_at is not None else None
    expired = expires is not None and now >= expires
    state = "revoked" if key.revoked_at is not None else "expired" if expired else "active"
    return {"prefix": key.prefix, "kind": key.kind, "name": key.name, "state": state, "active": state == "active",
            "created_at": as_utc(key.created_at).isoformat(),
            "last_used_at": None if key.last_used_at is None else as_utc(key.last_used_at).isoformat(),
            "expires_at": None if expires is None else expires.isoformat()}


def rename_shop(old_name: str, new_name: str) -> int:
    """Renames a shop; returns its id. Raises ValueError when the new name is taken."""
    with session_scope() as session:
        shop = shop_by_name(session, old_name)
        if session.scalar(sa.select(Shop.id).where(Shop.name == new_name)) is not None:
            raise ValueError(f"A shop named '{new_name}' already exists.")
        shop.name = new_name
        return shop.id


def delete_shop(name: str) -> dict[str, int]:
    """Deletes a shop with its keys, origins, catalog, answers and events; its outcomes stay
    (they hold no shop data) without the shop. Returns how many rows went from each table."""
    with session_scope() as session:
        shop_id = shop_by_name(session, name).id
        counted = {}
        for table in (Event, Recommendation, Product, ControlProduct, ApiKey, ShopOrigin):
            counted[table.__tablename__] = session.execute(sa.delete(table).where(table.shop_id == shop_id)).rowcount
        session.execute(sa.update(Outcome).where(Outcome.shop_id == shop_id).values(shop_id=None))
        session.execute(sa.delete(Shop).where(Shop.id == shop_id))
        counted["shops"] = 1
        return counted


def revoke_key(key_hash: str | None = None, prefix: str | None = None) -> KeyRecord:
    """Revokes the key with this hash (or, failing that, the one active key with this
    prefix) and returns it as it was. Raises NotFoundError when none or several match."""
    with session_scope() as session:
        query = sa.select(ApiKey).where(ApiKey.revoked_at.is_(None))
        matches = session.scalars(query.where(ApiKey.key_hash == key_hash)).all() if key_hash else []
        if not matches and prefix:
            matches = session.scalars(query.where(ApiKey.prefix == prefix)).all()
        if len(matches) != 1:
            raise NotFoundError("No active key matches." if not matches else "Several keys match: give the whole key.")
        key = matches[0]
        record = _key_record(session, key)
        key.revoked_at = utc_now()
        return record


def _key_record(session, key: ApiKey) -> KeyRecord:
    shop = session.get(Shop, key.shop_id)
    return KeyRecord(key_id=key.id, kind=key.kind, prefix=key.prefix, key_hash=key.key_hash,
                     revoked=key.revoked_at is not None, shop_id=shop.id, shop_name=shop.name,
                     origins=tuple(item.origin for item in shop.origins))


# The key with its shop and the shop's origins, one row per origin (or one with NULL).
_FIND_KEY = (
    sa.select(ApiKey.id, ApiKey.kind, ApiKey.prefix, ApiKey.key_hash, ApiKey.revoked_at, Shop.id, Shop.name,
              ShopOrigin.origin, ApiKey.expires_at, ApiKey.last_used_at)
    .join(Shop, Shop.id == ApiKey.shop_id)
    .outerjoin(ShopOrigin, ShopOrigin.shop_id == Shop.id)
    .where(ApiKey.key_hash == sa.bindparam("key_hash"))
    .order_by(ShopOrigin.origin)
)


def find_key(key_hash: str) -> KeyRecord | None:
    """The key with this sha256 (revoked ones too, so callers can say so), or None. On every
    keyed request, so one prepared statement on a plain connection."""
    with connection_scope() as connection:
        rows = connection.execute(_FIND_KEY, {"key_hash": key_hash}).all()
    if not rows:
        return None
    key_id, kind, prefix, stored_hash, revoked_at, shop_id, shop_name, _, expires_at, last_used_at = rows[0]
    return KeyRecord(key_id=key_id, kind=kind, prefix=prefix, key_hash=stored_hash, revoked=revoked_at is not None,
                     shop_id=shop_id, shop_name=shop_name,
                     origins=tuple(row.origin for row in rows if row.origin is not None),
                     expires_at=None if expires_at is None else as_utc(expires_at),
                     last_used_at=None if last_used_at is None else as_utc(last_used_at))


def origin_registered(origin: str) -> bool:
    """Whether any shop lists this origin (browser preflights carry no key to look up)."""
    with session_scope() as session:
        return session.scalar(sa.select(sa.exists().where(ShopOrigin.origin == origin))) or False


# ---- catalog ----------------------------------------------------------------------------

PRODUCT_FIELDS = ("sku", "name", "form", "elemental_mg_per_unit", "units_per_pack", "price", "currency", "url")
# Columns a catalog may leave out: a picture and a link that adds the product to the cart.
OPTIONAL_PRODUCT_FIELDS = ("image_url", "cart_url")
ALL_PRODUCT_FIELDS = PRODUCT_FIELDS + OPTIONAL_PRODUCT_FIELDS


PRODUCT_COLUMNS = tuple(getattr(Product, name) for name in ALL_PRODUCT_FIELDS)


def _product_dict(row) -> dict:
    product = dict(zip(ALL_PRODUCT_FIELDS, row, strict=True))
    product["price"] = float(product["price"])
    return product


def replace_catalog(shop_id: int, products: list[dict]) -> int:
    """The shop's catalog becomes exactly these validated products; returns how many."""
    with session_scope() as session:
        session.execute(sa.update(Shop).where(Shop.id == shop_id).values(catalog_version=Shop.catalog_version + 1))
        session.execute(sa.delete(Product).where(Product.shop_id == shop_id))
        session.add_all(Product(shop_id=shop_id, **{name: item.get(name) for name in ALL_PRODUCT_FIELDS})
                        for item in products)
        return len(products)


_LIST_PRODUCTS = sa.select(*PRODUCT_COLUMNS).where(Product.shop_id == sa.bindparam("shop_id")).order_by(
    Product.form, Product.sku)


def list_products(shop_id: int) -> list[dict]:
    """The shop's products, by form then sku."""
    with connection_scope() as connection:
        return [_product_dict(row) for row in connection.execute(_LIST_PRODUCTS, {"shop_id": shop_id})]


_CATALOG_VERSION = sa.select(Shop.catalog_version).where(Shop.id == sa.bindparam("shop_id"))


def catalog_version(shop_id: int) -> int:
    """The shop's catalog version: it rises with every catalog replacement, so a worker can
    keep an index of the catalog until it moves (one primary-key read per keyed answer)."""
    with connection_scope() as connection:
        return connection.execute(_CATALOG_VERSION, {"shop_id": shop_id}).scalar() or 0


def find_product(shop_id: int, sku: str) -> dict | None:
    with session_scope() as session:
        row = session.execute(sa.select(*PRODUCT_COLUMNS).where(Product.shop_id == shop_id, Product.sku == sku)).first()
        return _product_dict(row) if row is not None else None




# ---- outcomes (issue 6) and CDS feedback (issue 5) ---------------------------------------


class AlreadyRecorded(ValueError):
    """Feedback on this form of this answer is already stored (one report each)."""


def record_outcome(recommendation_id: str, form: str, tolerated: bool | None = None, helpful: int | None = None,
                   shop_id: int | None = None) -> int:
    """Stores how a recommended form worked out, and returns the record's id.

    ``recommendation_id`` is the answer's id (a uuid string the caller has checked was
    issued by this service; answers made without a shop key are not stored), ``form`` one
    of that answer's recommended forms, ``tolerated`` true/false/None (unknown), ``helpful``
    1 (not at all) to 5 (very) or None, ``shop_id`` the reporting shop or None. No profile
    data: the caller must not pass anything else about the person. Raises ValueError for a
    malformed id or a rating out of range, AlreadyRecorded for a second report on the same
    answer and form."""
    uuid.UUID(recommendation_id)
    if helpful is not None and (isinstance(helpful, bool) or not isinstance(helpful, int) or not 1 <= helpful <= 5):
        raise ValueError("helpful must be a whole number from 1 to 5, or None")
    if tolerated is not None and not isinstance(tolerated, bool):
        raise ValueError("tolerated must be true, false or None")
    with session_scope() as session:
        outcome = Outcome(recommendation_id=recommendation_id, form=form, tolerated=tolerated, helpful=helpful,
                          shop_id=shop_id)
        session.add(outcome)
        try:
            session.flush()
        except sa.exc.IntegrityError:
            raise AlreadyRecorded(f"feedback on {form} for answer {recommendation_id} is already recorded") from None
        return outcome.id


def list_outcomes(shop_id: int | None = None) -> list[dict]:
    """Every stored outcome, oldest first (only one shop's when ``shop_id`` is given), as
    dicts with id, recommendation_id, form, tolerated, helpful, created_at (a timezone-aware
    datetime) and shop_id."""
    with session_scope() as session:
        query = sa.select(Outcome).order_by(Outcome.id)
        if shop_id is not None:
            query = query.where(Outcome.shop_id == shop_id)
        return [
            {"id": item.id, "recommendation_id": item.recommendation_id, "form": item.form,
             "tolerated": item.tolerated, "helpful": item.helpful, "created_at": as_utc(item.created_at),
             "shop_id": item.shop_id}
            for item in session.scalars(query)
        ]


def record_cds_feedback(card_uuid: str, outcome: str, override_reason_code: str | None = None) -> int:
    """Stores CDS Hooks feedback on one card and returns the record's id.

    ``card_uuid`` is the card's uuid as sent in the card, ``outcome`` ``accepted`` or
    ``overridden``, ``override_reason_code`` the code of the chosen override reason (only
    with ``overridden``; None otherwise). Raises ValueError for anything else."""
    uuid.UUID(card_uuid)
    if outcome not in CDS_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(CDS_OUTCOMES)}")
    if override_reason_code is not None and outcome != "overridden":
        raise ValueError("override_reason_code is only given with outcome 'overridden'")
    with session_scope() as session:
        feedback = CdsFeedback(card_uuid=card_uuid, outcome=outcome, override_reason_code=override_reason_code)
        session.add(feedback)
        session.flush()
        return feedback.id


def list_cds_feedback() -> list[dict]:
    """Every stored CDS feedback record, oldest first."""
    with session_scope() as session:
        return [
            {"id": item.id, "card_uuid": item.card_uuid, "outcome": item.outcome,
             "override_reason_code": item.override_reason_code, "created_at": as_utc(item.created_at)}
            for item in session.scalars(sa.select(CdsFeedback).order_by(CdsFeedback.id))
        ]


def remember_card(card_uuid: str, suggestion_uuids: list[str], forget_after: int) -> None:
    """Remembers an issued card and its suggestions until ``forget_after`` (Unix seconds)."""
    with connection_scope() as connection:
        connection.execute(sa.insert(CdsCard.__table__).values(uuid=card_uuid, suggestions=" ".join(suggestion_uuids),
                                                               forget_after=forget_after))


def card_suggestions(card_uuid: str, now: float) -> list[str] | None:
    """The suggestion uuids of an issued card still remembered, or None for a card this
    service did not issue (or has forgotten)."""
    table = CdsCard.__table__
    with connection_scope() as connection:
        connection.execute(sa.delete(table).where(table.c.forget_after <= now))
        row = connection.execute(sa.select(table.c.suggestions).where(table.c.uuid == card_uuid)).first()
    return None if row is None else row.suggestions.split()


def app_secret(name: str) -> str:
    """The named secret, made (64 random hex digits) by whichever worker asks first."""
    table = AppSecret.__table__
    with connection_scope() as connection:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        connection.execute(insert(table).values(name=name, value=secrets.token_hex(32))
                           .on_conflict_do_nothing(index_elements=["name"]))
        return connection.execute(sa.select(table.c.value).where(table.c.name == name)).scalar_one()


def record_token_use(digest: str, forget_after: int, now: float) -> bool:
    """True when the token ``digest`` is recorded now, False when it was already: one
    statement that two workers cannot both win. Tokens past ``forget_after`` are forgotten."""
    table = CdsUsedToken.__table__
    with connection_scope() as connection:
        connection.execute(sa.delete(table).where(table.c.forget_after < now))
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        added = connection.execute(insert(table).values(digest=digest, forget_after=forget_after)
                                   .on_conflict_do_nothing(index_elements=["digest"]).returning(table.c.digest))
        return added.first() is not None



# ---- retention (issue 19) -----------------------------------------------------------------


def retention_days() -> int:
    """FORMWISE_RETENTION_DAYS (default 90): how long answers, events and outcomes are kept,
    and for how long after an answer its feedback is taken."""
    from formwise.service.settings import setting

    return setting("FORMWISE_RETENTION_DAYS")


def prune(older_than: dt.datetime, now: float) -> dict[str, int]:
    """Deletes what is older than ``older_than`` (answer ids, events, outcomes, CDS feedback)
    and what has outlived its own expiry (remembered CDS cards, used token ids); returns
    the rows deleted per table. Shops, keys and products are kept."""
    deleted = {}
    with connection_scope() as connection:
        for model in (Event, Outcome, CdsFeedback, Recommendation, AuditEntry):  # events before their answers
            table = model.__table__
            deleted[table.name] = connection.execute(sa.delete(table).where(table.c.created_at < older_than)).rowcount
        for model in (CdsCard, CdsUsedToken):
            table = model.__table__
            deleted[table.name] = connection.execute(sa.delete(table).where(table.c.forget_after <= now)).rowcount
    return deleted


# ---- audit log (issue 19) -----------------------------------------------------------------

AUDIT_ACTIONS = ("shop.created", "key.revoked", "origin.added", "origin.removed", "catalog.replaced", "cds.call",
                 "key.created", "key.rotated", "shop.renamed", "shop.deleted")


def record_audit(action: str, actor: str, subject: str, details: dict | None = None) -> None:
    """Appends one entry; ``details`` holds ids, counts and names, never a profile."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"audit action must be one of {', '.join(AUDIT_ACTIONS)}")
    with connection_scope() as connection:
        connection.execute(sa.insert(AuditEntry).values(
            created_at=utc_now(), actor=actor[:300], action=action, subject=subject[:200],
            details=json.dumps(details or {}, sort_keys=True, default=str)))


def list_audit(since: dt.datetime | None = None, action: str | None = None, limit: int = 1000) -> list[dict]:
    """The newest entries first (at most ``limit``), from ``since`` on, of one action if given."""
    table = AuditEntry.__table__
    query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(table.c.created_at >= since)
    if action is not None:
        query = query.where(table.c.action == action)
    with connection_scope() as connection:
        return [{"id": row.id, "at": as_utc(row.created_at).isoformat(), "actor": row.actor, "action": row.action,
                 "subject": row.subject, "details": json.loads(row.details)}
                for row in connection.execute(query)]

