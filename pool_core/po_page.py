"""Read a PO (or requisition) page as the site preset describes it.

Each reader is one `page.evaluate` round trip, so classifying a page, reading its
supplier and listing its attachments costs milliseconds, not one call per selector.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass

from playwright.sync_api import Page

from pool_core.sites import AttachmentSource, SitePreset

# Marks href-less attachment elements (buttons) so they can be clicked later.
CLICK_ATTRIBUTE = "data-poolsite-attachment"

_CLASSIFY_JS = """(args) => {
  const has = (sel) => {
    try { return !!document.querySelector(sel); } catch (e) { return false; }
  };
  const textOf = (scope) => {
    if (!scope) return ((document.body && document.body.textContent) || '').toLowerCase();
    let els = []; try { els = document.querySelectorAll(scope); } catch (e) { return ''; }
    return Array.from(els).map((el) => el.textContent || '').join(' ').toLowerCase();
  };
  const markers = args.markers.filter((m) => {
    const text = textOf(m.scope);
    return m.selectors.some(has) || m.texts.some((t) => text.includes(t.toLowerCase()));
  });
  return {login: args.login.some(has), signedIn: args.signedIn.some(has),
          markers: markers.map((m) => m.status)};
}"""

_SUPPLIER_JS = """(selectors) => {
  for (const sel of selectors) {
    let el = null; try { el = document.querySelector(sel); } catch (e) { continue; }
    const text = el && (el.innerText || el.textContent || '').trim();
    if (text) return text.slice(0, 200);
  }
  return '';
}"""

# Waits until every source's container is on the page or past its own remaining time
# (a comments app renders after `load`), or until `slice_ms` has passed: the caller
# looks between slices whether waiting still makes sense. True when done waiting.
_AWAIT_SOURCES_JS = """(args) => new Promise((resolve) => {
  const started = Date.now();
  const present = (sel) => {
    try { return !!document.querySelector(sel); } catch (e) { return true; }
  };
  const check = () => {
    const elapsed = Date.now() - started;
    const waiting = args.sources.some((s) => !present(s.container) && elapsed < s.timeout_ms);
    if (!waiting) { resolve(true); return; }
    if (elapsed >= args.slice_ms) { resolve(false); return; }
    setTimeout(check, 50);
  };
  check();
})"""
WAIT_SLICE_S = 0.5

# For each source: was its container seen, its "none" marker, and every file in it,
# deduplicated by element and by href. Href-less items are marked to be clicked later.
_READ_SOURCES_JS = """(args) => {
  const seen = new Set(), hrefs = new Set(), out = [];
  const here = location.href.split('#')[0];
  for (const source of args.sources) {
    let containers = [];
    try { containers = Array.from(document.querySelectorAll(source.container)); }
    catch (e) { out.push({name: source.name, seen: false, empty_marker: false, items: [],
                          error: String(e)}); continue; }
    const report = {name: source.name, seen: containers.length > 0, empty_marker: false,
                    items: [], error: ''};
    for (const box of containers) {
      if (source.empty) {
        try { report.empty_marker = report.empty_marker || !!box.querySelector(source.empty); }
        catch (e) { report.error = String(e); }
      }
      let els = [];
      try { els = box.querySelectorAll(source.items); } catch (e) { report.error = String(e); }
      for (const el of els) {
        if (seen.has(el)) continue;
        seen.add(el);
        const raw = source.fetch === 'click' ? '' : el.getAttribute('href');
        let href = '';
        if (raw) { try { href = new URL(raw, document.baseURI).href; } catch (e) { href = ''; } }
        const label = (el.getAttribute('title') || el.innerText || el.textContent ||
                       el.getAttribute('aria-label') || '').trim().slice(0, 200);
        if (/^https?:/i.test(href) && href.split('#')[0] !== here) {
          if (hrefs.has(href)) continue;
          hrefs.add(href);
          report.items.push({href: href, label: label, click: ''});
        } else {
          // The same element keeps its mark when the page is read again.
          let mark = el.getAttribute(args.attribute);
          if (!mark) {
            window.__poolsiteMarks = (window.__poolsiteMarks || 0) + 1;
            mark = args.prefix + String(window.__poolsiteMarks);
            el.setAttribute(args.attribute, mark);
          }
          report.items.push({href: '', label: label, click: mark});
        }
      }
    }
    out.push(report);
  }
  return out;
}"""

_LINK_JS = """(sel) => {
  let el = null; try { el = document.querySelector(sel); } catch (e) { return ''; }
  const raw = el && el.getAttribute('href');
  if (!raw) return '';
  try { return new URL(raw, document.baseURI).href; } catch (e) { return ''; }
}"""


@dataclass(frozen=True)
class PageVerdict:
    """What a page is: a login wall, an error page (status), or neither."""

    login: bool
    error_status: str = ""  # "PO_NOT_FOUND" | "ACCESS_DENIED" | ""
    signed_in: bool = False  # a signed-in marker of the preset is on the page


@dataclass(frozen=True)
class AttachmentLink:
    """One attachment offered by a page: a URL to download, or an element to click."""

    href: str
    label: str
    click: str = ""  # value of CLICK_ATTRIBUTE when there is no usable href
    source: str = "po"  # the page: "po" | "requisition"
    place: str = ""  # the preset's source it came from: "header", "comments", ...


@dataclass(frozen=True)
class SourceReading:
    """What one attachment source of one page showed: the evidence behind a count."""

    page: str  # "po" | "requisition"
    name: str
    seen: bool
    required: bool
    links: tuple[AttachmentLink, ...] = ()
    empty_marker: bool = False
    problem: str = ""  # why the source is not understood ("" when it is)

    @property
    def understood(self) -> bool:
        return not self.problem

    def describe(self) -> str:
        if self.problem:
            return f"{self.page} {self.name}: {self.problem}"
        if not self.seen:
            return f"{self.page} {self.name}: not on this page (optional)"
        return f"{self.page} {self.name}: {len(self.links)} file(s)"


def read_verdict(page: Page, site: SitePreset) -> PageVerdict:
    """Classify the loaded page: login wall (URL or form), error markers."""
    if any(fnmatch.fnmatchcase(page.url, pattern) for pattern in site.login_url_patterns):
        return PageVerdict(login=True)
    markers = [{"status": m.status, "texts": list(m.texts), "selectors": list(m.selectors),
                "scope": m.scope} for m in site.error_markers]
    found = page.evaluate(_CLASSIFY_JS, {"login": list(site.login_selectors),
                                         "signedIn": list(site.signed_in_selectors),
                                         "markers": markers})
    statuses = list(found["markers"])
    return PageVerdict(login=bool(found["login"]), error_status=statuses[0] if statuses else "",
                       signed_in=bool(found["signedIn"]))


def read_supplier(page: Page, site: SitePreset) -> str:
    """The supplier name shown on the page, or "" when the preset finds none."""
    if not site.supplier_selectors:
        return ""
    return str(page.evaluate(_SUPPLIER_JS, list(site.supplier_selectors)))


def read_sources(page: Page, site: SitePreset, kind: str, *, wait: bool = True,
                 give_up: Callable[[], object] = lambda: False) -> list[SourceReading]:
    """Read every attachment source of a `kind` page, after waiting for them to render.

    With wait=False, what the page shows now (to start on the files that are there at
    `load` while the rest renders); an element read twice keeps its click mark. The
    wait ends early when `give_up()` is true (the page's requests were sent to sign in).
    """
    sources = site.sources_for(kind)
    if not sources:
        return []
    wanted = [{"name": s.name, "container": s.container, "items": s.items, "fetch": s.fetch,
               "empty": s.empty, "timeout_ms": int(s.render_timeout_s * 1000)}
              for s in sources]
    if wait:
        _await_sources(page, wanted, give_up)
    found = page.evaluate(_READ_SOURCES_JS, {"sources": wanted, "attribute": CLICK_ATTRIBUTE,
                                             "prefix": kind[0]})
    readings = []
    for source, report in zip(sources, found, strict=True):
        links = tuple(AttachmentLink(href=item["href"], label=item["label"],
                                     click=item["click"], source=kind, place=source.name)
                      for item in report["items"])
        readings.append(SourceReading(page=kind, name=source.name, seen=bool(report["seen"]),
                                      required=source.required, links=links,
                                      empty_marker=bool(report["empty_marker"]),
                                      problem=_problem(source, report)))
    return readings


def _await_sources(page: Page, wanted: list[dict], give_up: Callable[[], object]) -> None:
    started = time.monotonic()
    while True:
        elapsed_ms = int((time.monotonic() - started) * 1000)
        left = [{**s, "timeout_ms": s["timeout_ms"] - elapsed_ms} for s in wanted]
        if page.evaluate(_AWAIT_SOURCES_JS, {"sources": left,
                                             "slice_ms": int(WAIT_SLICE_S * 1000)}):
            return
        if give_up():
            return


def _problem(source: AttachmentSource, report: dict) -> str:
    if report.get("error"):
        return f"the preset's selector is invalid ({report['error'][:120]})"
    if not report["seen"]:
        if not source.required:
            return ""
        return (f"its container ({source.container}) did not appear within "
                f"{source.render_timeout_s:g} s")
    if source.empty and not report["items"] and not report["empty_marker"]:
        return f"neither files nor the 'none' marker ({source.empty}) are shown"
    return ""


def read_requisition_url(page: Page, site: SitePreset) -> str:
    """The absolute URL of the PO's requisition link, or "" when there is none."""
    if not site.requisition_selector:
        return ""
    return str(page.evaluate(_LINK_JS, site.requisition_selector))
