"""Read an uploaded session file and turn it into a Playwright storage state, or refuse.

Accepted: a Playwright storage state (`{"cookies": [...], "origins": [...]}`), a
Netscape `cookies.txt` (curl, wget, "Get cookies.txt" extensions) and the JSON array
that cookie-export extensions write (Cookie-Editor, EditThisCookie: `expirationDate`,
`hostOnly`, `sameSite: "no_restriction"`...). Refused: anything malformed, cookies for
a host off the site preset's allow-list, cookies already expired, and any field a
browser would not set: names must be RFC 6265 tokens, values cookie-octets, domains
host names, paths absolute, with no control characters anywhere. Parsing is bounded
(size, JSON nesting depth, counts) so a hostile file is refused, not a crash. Messages
name the problem (cookie number, name, host), never a value.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pool_core.sites import SitePreset

MAX_BYTES = 1024 * 1024
MAX_COOKIES = 2000
# A storage state nests 5 deep ({"origins": [{"localStorage": [{...}]}]}); Python's
# json module recurses once per level, and 200,000 levels raised RecursionError (500).
MAX_DEPTH = 10
MAX_ORIGINS = 200
MAX_LOCAL_STORAGE = 2000
MAX_COOKIE_BYTES = 4096  # name + value: what browsers keep of one cookie
MAX_PATH = 1024
# RFC 6265 section 4.1.1: a name is a token (no CTLs, no separators); a value is
# cookie-octets, optionally in double quotes.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_COOKIE_VALUE = re.compile(r'^(?:[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*|'
                           r'"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")$')
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN = re.compile(rf"^\.?{_LABEL}(?:\.{_LABEL})*\.?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None", "no_restriction": "None",
              "unspecified": "Lax", "": "Lax"}


class SessionFileError(ValueError):
    """An uploaded session file that cannot be used; the message says why."""


def storage_state_from_upload(data: bytes, site: SitePreset,
                              now: float | None = None) -> dict[str, Any]:
    """Parse, convert and validate an upload; SessionFileError names the problem."""
    if len(data) > MAX_BYTES:
        raise SessionFileError(f"the file is larger than {MAX_BYTES // 1024} KB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SessionFileError("the file is not UTF-8 text (expected JSON or cookies.txt)"
                               ) from None
    if "\x00" in text:
        raise SessionFileError("the file contains NUL bytes: it is not a cookie export")
    state = _parse(text)
    check_state(state, site, time.time() if now is None else now)
    return state


def check_state(state: dict[str, Any], site: SitePreset, now: float) -> None:
    """Refuse cookies or origins off the allow-list, and expired cookies."""
    cookies = state["cookies"]
    if not cookies:
        raise SessionFileError("the file holds no cookies")
    if len(cookies) > MAX_COOKIES:
        raise SessionFileError(f"the file holds {len(cookies)} cookies (at most {MAX_COOKIES})")
    foreign = sorted({c["domain"].lstrip(".") for c in cookies if not _allowed(c, site)})
    foreign += sorted({o["origin"][:100] for o in state["origins"]
                       if not _origin_allowed(o, site)})
    if foreign:
        raise SessionFileError(
            f"cookies for hosts outside the allow-list of site {site.name!r}: "
            f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''} (allowed: "
            f"{', '.join(site.allowed_hosts) or 'none'}); export only the site's cookies")
    expired = [(i, c) for i, c in enumerate(cookies, 1) if 0 < c["expires"] <= now]
    if expired:
        i, cookie = expired[0]
        when = datetime.fromtimestamp(cookie["expires"], tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise SessionFileError(
            f"{len(expired)} cookie(s) already expired, e.g. cookie #{i} "
            f"{_label(cookie)} for {cookie['domain']} expired {when}; sign in again and "
            "export a fresh file")


def _parse(text: str) -> dict[str, Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        _check_depth(stripped)
        try:
            data = json.loads(stripped)
        except (ValueError, RecursionError) as exc:
            raise SessionFileError(f"the JSON is malformed: {exc}") from None
        if isinstance(data, dict):
            return _from_storage_state(data)
        if isinstance(data, list):
            return {"cookies": [_from_extension(c, i) for i, c in
                                enumerate(_count(data, MAX_COOKIES, "cookies"), 1)],
                    "origins": []}
    if stripped.startswith("#") or "\t" in stripped:
        return {"cookies": list(_from_netscape(text.splitlines())), "origins": []}
    raise SessionFileError("not a storage-state JSON, a cookie-export JSON array or a "
                           "Netscape cookies.txt")


def _check_depth(text: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH, before the recursive parser sees it."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise SessionFileError(f"the JSON is nested more than {MAX_DEPTH} levels deep; "
                                       "a cookie export never is")
        elif char in "]}":
            depth -= 1


def _count(items: list[Any], limit: int, what: str) -> list[Any]:
    if len(items) > limit:
        raise SessionFileError(f"the file holds {len(items)} {what} (at most {limit})")
    return items


def _from_storage_state(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data.get("cookies"), list):
        raise SessionFileError('a storage state needs a "cookies" list')
    origins = _count(data.get("origins", []) if isinstance(data.get("origins", []), list)
                     else [None], MAX_ORIGINS, "origins")
    if not all(isinstance(o, dict) and isinstance(o.get("origin"), str)
               and isinstance(o.get("localStorage", []), list) for o in origins):
        raise SessionFileError('"origins" must be a list of {"origin", "localStorage"}')
    cookies = [_cookie(c, f"cookie #{i}", expires_key="expires")
               for i, c in enumerate(_count(data["cookies"], MAX_COOKIES, "cookies"), 1)]
    return {"cookies": cookies, "origins": [
        {"origin": _origin_text(o["origin"]), "localStorage": [
            _storage_entry(e, o["origin"])
            for e in _count(o.get("localStorage", []), MAX_LOCAL_STORAGE,
                            "local-storage entries for one origin") if isinstance(e, dict)]}
        for o in origins if o.get("localStorage")]}


def _origin_text(origin: str) -> str:
    if len(origin) > 300 or _CONTROL.search(origin) or not origin.startswith(
            ("http://", "https://")):
        raise SessionFileError(f"origin {origin[:60]!r} is not an http(s) origin")
    return origin


def _storage_entry(entry: dict[str, Any], origin: str) -> dict[str, str]:
    name, value = str(entry.get("name", "")), str(entry.get("value", ""))
    if "\x00" in name or len(name) > 1024 or len(value) > 512 * 1024:
        raise SessionFileError(f"a local-storage entry of {origin[:60]!r} is malformed "
                               "(NUL, or too long)")
    return {"name": name, "value": value}


def _from_extension(item: Any, number: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise SessionFileError(f"cookie #{number} is not an object")
    cookie = dict(item)
    if cookie.get("session") is True:
        cookie.pop("expirationDate", None)
    if cookie.get("hostOnly") is False and not str(cookie.get("domain", "")).startswith("."):
        cookie["domain"] = "." + str(cookie.get("domain", ""))
    return _cookie(cookie, f"cookie #{number}", expires_key="expirationDate")


def _from_netscape(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for number, line in enumerate(lines, 1):
        http_only = line.startswith("#HttpOnly_")
        if http_only:
            line = line[len("#HttpOnly_"):]
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 7:
            raise SessionFileError(f"line {number} of the cookies.txt has {len(fields)} "
                                   "tab-separated fields, not 7")
        domain, subdomains, path, secure, expires, name, value = fields
        if not expires.strip().lstrip("-").isdigit():
            raise SessionFileError(f"line {number} of the cookies.txt: expiry is not a number")
        if subdomains.upper() == "TRUE" and not domain.startswith("."):
            domain = "." + domain
        yield _cookie({"domain": domain, "path": path, "secure": secure.upper() == "TRUE",
                       "expires": int(expires) or -1, "name": name, "value": value,
                       "httpOnly": http_only}, f"line {number}", expires_key="expires")


def _cookie(raw: dict[str, Any], where: str, *, expires_key: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SessionFileError(f"{where} is not an object")
    name, value, domain = raw.get("name"), raw.get("value"), raw.get("domain")
    if not isinstance(name, str) or not name:
        raise SessionFileError(f"{where} has no name")
    if not isinstance(value, str):
        raise SessionFileError(f"{where} ({name[:60]!r}) has no text value")
    if not isinstance(domain, str) or not domain.strip(".").strip():
        raise SessionFileError(f"{where} ({name[:60]!r}) has no domain")
    expires = raw.get(expires_key, -1)
    if expires is None:
        expires = -1
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise SessionFileError(f"{where} ({name[:60]!r}): {expires_key} is not a number")
    secure = bool(raw.get("secure", False))
    same_site = _SAME_SITE.get(str(raw.get("sameSite") or "").lower())
    if same_site is None:
        raise SessionFileError(f"{where} ({name[:60]!r}): unknown sameSite "
                               f"{str(raw.get('sameSite'))[:20]!r}")
    if same_site == "None" and not secure:
        same_site = "Lax"  # Chromium drops SameSite=None cookies that are not Secure
    path = raw.get("path") or "/"
    domain = domain.strip().lower()
    _check_fields(where, name, value, domain, path)
    return {"name": name, "value": value, "domain": domain,
            "path": path, "expires": float(expires) if expires > 0
            else -1, "httpOnly": bool(raw.get("httpOnly", False)), "secure": secure,
            "sameSite": same_site}


def _check_fields(where: str, name: str, value: str, domain: str, path: Any) -> None:
    """Refuse what a browser would never have stored (RFC 6265), naming the field."""
    shown = repr(name[:60]) if not _CONTROL.search(name[:60]) else "with control characters"
    if not _TOKEN.match(name):
        raise SessionFileError(f"{where} {shown}: the name is not a cookie name (letters, "
                               "digits and !#$%&'*+-.^_`|~ only; no spaces, '/', '=' or "
                               "control characters)")
    if not _COOKIE_VALUE.match(value):
        raise SessionFileError(f"{where} ({shown}): the value has characters a cookie "
                               "value may not hold (spaces, quotes, ',', ';', '\\' or "
                               "control characters)")
    if len(name) + len(value) > MAX_COOKIE_BYTES:
        raise SessionFileError(f"{where} ({shown}) is longer than {MAX_COOKIE_BYTES} bytes")
    if len(domain) > 253 or not _DOMAIN.match(domain):
        raise SessionFileError(f"{where} ({shown}): the domain is not a host name")
    if (not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH
            or _CONTROL.search(path) or ";" in path):
        raise SessionFileError(f"{where} ({shown}): the path must start with '/' and hold "
                               "no control characters or ';'")


def _allowed(cookie: dict[str, Any], site: SitePreset) -> bool:
    domain = cookie["domain"]
    host = domain.lstrip(".")
    # A domain cookie (".acme.example") is sent to its subdomains too: accept it when
    # the allow-list covers the domain or its subdomains ("*.acme.example").
    return site.host_allowed(host) or (domain.startswith(".") and site.host_allowed(
        "sub." + host))


def _origin_allowed(origin: dict[str, Any], site: SitePreset) -> bool:
    return site.check_url(origin["origin"]) is None


def _label(cookie: dict[str, Any]) -> str:
    return repr(cookie["name"][:60])
