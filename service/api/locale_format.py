"""Numbers and dates as a locale writes them, for the pages and cards people read (the JSON
answers keep plain numbers and ISO dates)."""

from __future__ import annotations

import datetime as dt


def format_number(value: float, locale: str, decimals: int = 2) -> str:
    """1,234.5 in English, 1.234,5 in German; at most ``decimals`` decimals, none trailing."""
    value = round(float(value), decimals)
    text = f"{value:,.0f}" if value.is_integer() else f"{value:,.{decimals}f}".rstrip("0").rstrip(".")
    if locale == "de":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def format_date(value: str | dt.date | None, locale: str) -> str | None:
    """2026-01-02 in English (ISO, unambiguous), 02.01.2026 in German."""
    if value is None or value == "":
        return None
    iso = value.isoformat() if isinstance(value, dt.date) else str(value)
    if locale != "de":
        return iso
    year, month, day = iso[:10].split("-")
    return f"{day}.{month}.{year}"


def format_quarters(value: float, locale: str) -> str:
    """A kitchen measure to the nearest quarter: ¼, ½, 1¾ (0 stays 0)."""
    quarters = round(value * 4)
    whole, part = divmod(quarters, 4)
    fraction = {0: "", 1: "¼", 2: "½", 3: "¾"}[part]
    if whole == 0:
        return fraction or "0"
    return f"{whole}{fraction}"
