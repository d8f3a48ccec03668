"""Read a PO (or requisition) page as the site preset describes it.

Each reader is one `page.evaluate` round trip, so classifying a page, reading its
supplier and listing its attachments costs milliseconds, not one call per selector.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from playwright.sync_api import Page

from pool_core.sites import SitePreset

# Marks href-less attachment elements (buttons) so they can be clicked later.
CLICK_ATTRIBUTE = "data-poolsite-attachment"

_CLASSIFY_JS = """(args) => {
  const has = (sel) => {
    try { return !!document.querySelector(sel); } catch (e) { return false; }
  };
  const text = ((document.body && document.body.textContent) || '').toLowerCase();
  const markers = args.markers.filter(
    (m) => m.selectors.some(has) || m.texts.some((t) => text.includes(t.toLowerCase())));
  return {login: args.login.some(has), markers: markers.map((m) => m.status)};
}"""

_SUPPLIER_JS = """(selectors) => {
  for (const sel of selectors) {
    let el = null; try { el = document.querySelector(sel); } catch (e) { continue; }
    const text = el && (el.innerText || el.textContent || '').trim();
    if (text) return text.slice(0, 200);
  }
  return '';
}"""

_ATTACHMENTS_JS = """(args) => {
  const seen = new Set(), hrefs = new Set(), items = [];
  const here = location.href.split('#')[0];
  for (const sel of args.selectors) {
    let els = []; try { els = document.querySelectorAll(sel); } catch (e) { continue; }
    for (const el of els) {
      if (seen.has(el)) continue;
      seen.add(el);
      const raw = el.getAttribute('href');
      let href = '';
      if (raw) { try { href = new URL(raw, document.baseURI).href; } catch (e) { href = ''; } }
      const label = (el.innerText || el.textContent || '').trim().slice(0, 200);
      if (/^https?:/i.test(href) && href.split('#')[0] !== here) {
        if (hrefs.has(href)) continue;
        hrefs.add(href);
        items.push({href: href, label: label, click: ''});
      } else {
        const mark = String(items.length);
        el.setAttribute(args.attribute, mark);
        items.push({href: '', label: label, click: mark});
      }
    }
  }
  return items;
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


@dataclass(frozen=True)
class AttachmentLink:
    """One attachment offered by a page: a URL to download, or an element to click."""

    href: str
    label: str
    click: str = ""  # value of CLICK_ATTRIBUTE when there is no usable href
    source: str = "po"  # "po" | "requisition"


def read_verdict(page: Page, site: SitePreset) -> PageVerdict:
    """Classify the loaded page: login wall (URL or form), error markers."""
    if any(fnmatch.fnmatchcase(page.url, pattern) for pattern in site.login_url_patterns):
        return PageVerdict(login=True)
    markers = [{"status": m.status, "texts": list(m.texts), "selectors": list(m.selectors)}
               for m in site.error_markers]
    found = page.evaluate(_CLASSIFY_JS, {"login": list(site.login_selectors),
                                         "markers": markers})
    statuses = list(found["markers"])
    return PageVerdict(login=bool(found["login"]), error_status=statuses[0] if statuses else "")


def read_supplier(page: Page, site: SitePreset) -> str:
    """The supplier name shown on the page, or "" when the preset finds none."""
    if not site.supplier_selectors:
        return ""
    return str(page.evaluate(_SUPPLIER_JS, list(site.supplier_selectors)))


def read_attachments(page: Page, site: SitePreset, source: str = "po") -> list[AttachmentLink]:
    """Every attachment the preset's selectors find, deduplicated by element and href."""
    if not site.attachment_selectors:
        return []
    found = page.evaluate(_ATTACHMENTS_JS, {"selectors": list(site.attachment_selectors),
                                            "attribute": CLICK_ATTRIBUTE})
    return [AttachmentLink(href=item["href"], label=item["label"], click=item["click"],
                           source=source) for item in found]


def read_requisition_url(page: Page, site: SitePreset) -> str:
    """The absolute URL of the PO's requisition link, or "" when there is none."""
    if not site.requisition_selector:
        return ""
    return str(page.evaluate(_LINK_JS, site.requisition_selector))
