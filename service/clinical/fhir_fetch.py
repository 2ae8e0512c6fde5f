"""Outbound FHIR reads for CDS Hooks that a caller cannot aim (issue 19).

A hook request names a ``fhirServer`` and a bearer token. Followed blindly, that lets anyone
make this service call any address (the cloud metadata service, a database port on
loopback) with a token, and tell open from closed ports by the answer. So:

- only FHIR base URLs in the configured allow-list are called (none by default: prefetch
  only); URLs are parsed and normalised before matching (http/https, no userinfo, no ``.``
  or ``..`` segments, scheme, host and port exact, path prefix on segment boundaries);
- the host is resolved once and every address checked: loopback, private, link-local
  (cloud metadata), multicast and reserved ranges are refused unless the host is allowed by
  name (``FORMWISE_CDS_FHIR_PRIVATE_HOSTS``); the connection then goes to that checked address, so a
  second DNS answer cannot swap it (TLS still verifies the name);
- redirects are not followed; a response is capped before and after decompression, every
  read has a timeout and the whole call a deadline;
- every failure past the allow-list reads the same to the caller ("could not be read"), so
  nothing can be learnt about the network; the log says which check failed.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
import zlib
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import orjson
import urllib3

log = logging.getLogger("formwise.cds")

NEUTRAL_FAILURE = "the FHIR server could not be read"
DEFAULT_PORTS = {"http": 80, "https": 443}


class FhirFetchRefused(Exception):
    """The URL is not one this service may call (the reason is safe to show)."""


class FhirFetchFailed(Exception):
    """The call was made or attempted and failed; the caller sees only NEUTRAL_FAILURE."""


@dataclass(frozen=True)
class FetchLimits:
    connect_seconds: float = 2.0
    read_seconds: float = 3.0  # each read
    deadline_seconds: float = 8.0  # every read of one hook call together
    max_body_bytes: int = 2 * 1024 * 1024  # as sent (compressed or not)
    max_decoded_bytes: int = 8 * 1024 * 1024  # after decompression
    max_pages: int = 10


@dataclass(frozen=True)
class BaseUrl:
    """A parsed, normalised FHIR base URL: scheme, lower-case host, explicit port, path
    segments (without empty or dot segments)."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, url: str) -> BaseUrl:
        parts = urlsplit(str(url).strip())
        if parts.scheme not in DEFAULT_PORTS:
            raise FhirFetchRefused("the fhirServer must be an http or https URL")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise FhirFetchRefused("the fhirServer must not carry a user name or password")
        if parts.query or parts.fragment:
            raise FhirFetchRefused("the fhirServer must not carry a query or fragment")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise FhirFetchRefused("the fhirServer's port is not a number") from None
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise FhirFetchRefused("the fhirServer has no host")
        segments = tuple(unquote(segment) for segment in parts.path.split("/") if segment)
        if any(segment in (".", "..") or "/" in segment or "\\" in segment for segment in segments):
            raise FhirFetchRefused("the fhirServer's path must not hold '.' or '..' segments")
        return cls(parts.scheme, host, port, segments)

    def within(self, allowed: BaseUrl) -> bool:
        return ((self.scheme, self.host, self.port) == (allowed.scheme, allowed.host, allowed.port)
                and self.segments[: len(allowed.segments)] == allowed.segments)

    @property
    def url(self) -> str:
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        path = "/".join(self.segments)
        return f"{self.scheme}://{self.host}{port}/{path}{'/' if path else ''}"


def parse_allow_list(urls) -> tuple[BaseUrl, ...]:
    """The configured FHIR base URLs; a malformed one stops start-up (ValueError)."""
    parsed = []
    for url in urls:
        try:
            parsed.append(BaseUrl.parse(url))
        except FhirFetchRefused as error:
            raise ValueError(f"FORMWISE_CDS_ALLOWED_FHIR_SERVERS: '{url}': {error}") from None
    return tuple(parsed)


def _public(address: str) -> bool:
    """A globally routable unicast address: not loopback, private, link-local (the cloud
    metadata service), shared, reserved, unspecified or multicast; IPv4-mapped IPv6 as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class FhirFetcher:
    """Reads FHIR queries from one hook call's ``fhirServer``, within the allow-list and the
    limits; one instance per hook call (the deadline is shared by its reads)."""

    def __init__(self, server: str, token: str | None, allowed: tuple[BaseUrl, ...],
                 private_hosts: frozenset[str] = frozenset(), limits: FetchLimits = FetchLimits()):
        if not allowed:
            raise FhirFetchRefused("this service fetches no FHIR data: it is configured to take prefetch only "
                                   "(FORMWISE_CDS_ALLOWED_FHIR_SERVERS is empty)")
        self.base = BaseUrl.parse(server)
        if not any(self.base.within(entry) for entry in allowed):
            raise FhirFetchRefused("the fhirServer is not one this service is configured to call "
                                   "(FORMWISE_CDS_ALLOWED_FHIR_SERVERS)")
        self.token = token
        self.private_hosts = frozenset(host.lower() for host in private_hosts)
        self.limits = limits
        self.deadline = time.monotonic() + limits.deadline_seconds
        self._address: str | None = None

    def get(self, query: str) -> dict:
        """One query, following a searchset's next links on the same base (at most
        ``max_pages``), entries merged."""
        url, merged = urljoin(self.base.url, query), None
        for _ in range(self.limits.max_pages):
            page = self._get_json(url)
            if merged is None:
                merged = page
            else:
                merged.setdefault("entry", []).extend(page.get("entry") or [])
            next_url = next((link.get("url") for link in page.get("link") or []
                             if isinstance(link, dict) and link.get("relation") == "next"), None)
            if page.get("resourceType") != "Bundle" or not next_url or not self._same_base(str(next_url)):
                break
            url = str(next_url)
        return merged

    def _same_base(self, url: str) -> bool:
        parts = urlsplit(url)
        try:
            target = BaseUrl.parse(parts._replace(query="", fragment="").geturl())
        except FhirFetchRefused:
            return False
        return target.within(self.base)

    def _checked_address(self) -> str:
        """The host's address, resolved once per call and refused when not public (unless
        the host is allowed by name)."""
        if self._address is None:
            try:
                infos = socket.getaddrinfo(self.base.host, self.base.port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError):
                raise FhirFetchFailed("the host does not resolve") from None
            addresses = [info[4][0] for info in infos]
            if self.base.host not in self.private_hosts and not all(_public(address) for address in addresses):
                raise FhirFetchFailed("the host resolves to a non-public address")
            self._address = addresses[0]
        return self._address

    def _get_json(self, url: str) -> dict:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")  # next links passed _same_base
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FhirFetchFailed("the deadline passed")
        address = self._checked_address()
        timeout = urllib3.Timeout(connect=min(self.limits.connect_seconds, remaining),
                                  read=min(self.limits.read_seconds, remaining))
        headers = {"Accept": "application/fhir+json", "Accept-Encoding": "gzip, deflate",
                   "Host": self.base.host if self.base.port == DEFAULT_PORTS[self.base.scheme]
                   else f"{self.base.host}:{self.base.port}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.base.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(address, self.base.port, timeout=timeout, retries=False,
                                               server_hostname=self.base.host, assert_hostname=self.base.host)
        else:
            pool = urllib3.HTTPConnectionPool(address, self.base.port, timeout=timeout, retries=False)
        try:
            response = pool.urlopen("GET", path, headers=headers, redirect=False, preload_content=False,
                                    decode_content=False, assert_same_host=False)
            try:
                if response.status != 200:
                    raise FhirFetchFailed(f"status {response.status}")
                body = self._read_capped(response)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as error:
            raise FhirFetchFailed(type(error).__name__) from None
        finally:
            pool.close()
        try:
            page = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FhirFetchFailed("not JSON") from None
        if not isinstance(page, dict):
            raise FhirFetchFailed("not a resource")
        return page

    def _read_capped(self, response) -> bytes:
        """The body, read a chunk at a time against the deadline, capped as sent and after
        gzip or deflate decoding (a small bomb cannot inflate past the cap)."""
        encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "deflate"):
            raise FhirFetchFailed(f"content encoding {encoding}")
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS) \
            if encoding != "identity" else None
        received, decoded = 0, []
        decoded_size = 0
        while True:
            if time.monotonic() > self.deadline:
                raise FhirFetchFailed("the deadline passed while reading")
            chunk = response.read1(64 * 1024)
            if not chunk:
                break
            received += len(chunk)
            if received > self.limits.max_body_bytes:
                raise FhirFetchFailed("the body is too large")
            if decoder is None:
                decoded.append(chunk)
                decoded_size += len(chunk)
            else:
                room = self.limits.max_decoded_bytes - decoded_size + 1
                try:
                    piece = decoder.decompress(chunk, room)
                except zlib.error:
                    raise FhirFetchFailed("the body does not decompress") from None
                if decoder.unconsumed_tail:
                    raise FhirFetchFailed("the body inflates past the cap")
                decoded.append(piece)
                decoded_size += len(piece)
            if decoded_size > self.limits.max_decoded_bytes:
                raise FhirFetchFailed("the body inflates past the cap")
        return b"".join(decoded)


def describe_failure(error: Exception) -> str:
    """What the caller is told: the refusal's own reason, or the neutral text."""
    return str(error) if isinstance(error, FhirFetchRefused) else NEUTRAL_FAILURE
