"""HTML of the "coupa" page shape, built on the structure of a real saved Coupa PO page.

What makes it hard for automation, as the real page does: third-party scripts and
beacons in <head>, a long page, header attachments that are click-only spans at the
very end of the page under a fixed button bar, and comments (with their attachment
links) that a script renders only after the page has loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

from poolsite.demo_erp import catalog
from poolsite.demo_erp.catalog import DemoPO

NOT_FOUND_TEXT = "Oops! We couldn't find what you wanted"
ACCESS_DENIED_TEXT = "You are not authorized to view this page. Access denied."
ANALYTICS_KEY = "7c1f3a52-9e4b-4d6a-8b20-3f5e9d0a4c11"
MONITORING_KEY = "demo0license0key"
LOGO_KEY = "Xq7DemoLogo"
LINE_ITEMS = 36  # enough rows for a page taller than three 1280x720 viewports


@dataclass(frozen=True)
class Hosts:
    """The addresses a coupa page refers to."""

    tenant: str
    analytics: str
    monitoring: str
    canary: str = ""  # set only for the page that loads a sub-resource from the canary


def purchase_order(po: DemoPO, hosts: Hosts, memory_hog: bool = False) -> str:
    requisition_id = catalog.coupa_requisition_id(po)
    body = (
        f'<h1 id="pageHeader"> Purchase Order #{po.po_number} </h1>'
        + _page_sections()
        + '<div class="sticky" id="flash_container" style="display:none;"></div>'
        + _related_documents(po.digits, "order_headers")
        + '<div class="content wide"><div id="order_body">'
        + _general_info(po, requisition_id)
        + _supplier(po)
        + _lines(po)
        + _extra(hosts, memory_hog)
        + _buttons("order_header_show_buttons", "orderHeaderShowFloatingSection",
                   ("Supplier Print View", "Create Invoice", "Change Order"))
        + _comments_mount()
        + _header_attachments(catalog.header_files(po), po.digits)
        + "</div></div>"
    )
    return _document("order_headers", po.digits, f"Purchase Order #{po.po_number}", body, hosts)


def requisition(po: DemoPO, hosts: Hosts) -> str:
    requisition_id = catalog.coupa_requisition_id(po)
    body = (
        f'<h1 id="pageHeader"> Requisition #{requisition_id} </h1>'
        + '<div class="sticky" id="flash_container" style="display:none;"></div>'
        + '<div class="content wide"><div id="requisition_body">'
        + '<section class="region flexVerticalReviewForm"><div class="header"><h2>General Info'
        + "</h2></div><div class=\"content\">"
        + _field("Requisition #", requisition_id)
        + _field("Order", f"#{po.po_number}")
        + _field("Requested By", catalog.COMMENT_AUTHORS[2])
        + "</div></section>"
        + _lines(po)
        + _buttons("requisition_header_show_buttons", "requisitionHeaderShowFloatingSection",
                   ("Print", "Copy to Cart"))
        + _comments_mount()
        + _header_attachments(catalog.header_files(po, on_requisition=True), requisition_id)
        + "</div></div>"
    )
    return _document("requisition_headers", requisition_id, f"Requisition #{requisition_id}",
                     body, hosts)


def comments_json(po: DemoPO, tenant: str, on_requisition: bool = False) -> str:
    """What the comments app fetches: comments, each with absolute links to its files."""
    return json.dumps({"comments": [
        {"author": c.author, "text": c.text, "commented_at": c.commented_at,
         "files": [{"id": f.file_id, "name": f.site_name, "url": tenant + f.path}
                   for f in c.files]}
        for c in catalog.coupa_comments(po, on_requisition)]})


def orders_index(hosts: Hosts) -> str:
    body = ('<div class="sticky" id="flash_container" style="display:none;"></div>'
            "<h1 id=\"pageHeader\"> Orders </h1><p id='signed_in'>Signed in.</p>")
    return _document("order_headers", "", "Orders", body, hosts)


def error(controller: str, flash: str, hosts: Hosts) -> str:
    """An error page: the flash container is visible and holds the message."""
    body = ('<div class="sticky" id="flash_container">'
            f'<div class="flash_error">{escape(flash, quote=False)}</div></div>')
    return _document(controller, "", "Coupa", body, hosts)


def identity_login(realm: str, fields: dict[str, str], error_text: str = "") -> str:
    """The identity provider's sign-in page (the shape of a Keycloak login form)."""
    hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                     for k, v in fields.items())
    alert = (f'<div class="alert-error"><span id="input-error">{escape(error_text)}</span>'
             "</div>") if error_text else ""
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Sign in to {escape(realm)}</title></head><body id=\"keycloak-bg\">"
        f'<div id="kc-header"><div id="kc-header-wrapper">{escape(realm)}</div></div>'
        f'<div id="kc-content"><h1 id="kc-page-title">Sign in to your account</h1>{alert}'
        f'<form id="kc-form-login" method="post" action="/realms/{escape(realm)}'
        f'/login-actions/authenticate">{hidden}'
        '<label for="username">Username or email</label>'
        '<input id="username" name="username" type="text" autofocus autocomplete="username">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password">'
        '<input id="kc-login" name="login" type="submit" value="Sign In">'
        "</form></div></body></html>"
    )


# -- pieces ---------------------------------------------------------------------------------

def _document(controller: str, record_id: str, title: str, body: str, hosts: Hosts) -> str:
    return (
        f'<!doctype html><html data-action="show" data-controller="{controller}" '
        f'data-id="{escape(record_id)}" dir="ltr" lang="en"><head><meta charset="utf-8">'
        + _third_party_head(hosts)
        + f"<title>{escape(title)}</title>"
        '<link rel="stylesheet" href="/assets/order_headers_common.css" media="all">'
        '<script src="/assets/order_headers_common.js"></script>'
        '<script src="/assets/comments.js"></script>'
        '</head><body class="" data-env="production">'
        f'<div class="wrapper {controller}_show_page s-pageContent">'
        + _global_header()
        + '<div id="main-content-skip" tabindex="-1"></div>'
        '<div class="outer_wrapper"><div id="page-container" role="main">'
        f'<div id="pageContentWrapper">{body}</div></div></div></div></body></html>'
    )


def _third_party_head(hosts: Hosts) -> str:
    """Analytics and monitoring agents, as every real tenant page loads them."""
    events = f"{hosts.monitoring}/events/1/{MONITORING_KEY}"
    beacon = json.dumps(events + "?type=beacon")
    live = "ws" + hosts.monitoring.removeprefix("http") + f"/live/{MONITORING_KEY}"
    return (
        f'<script async src="{hosts.analytics}/agent/static/{ANALYTICS_KEY}/pendo.js"></script>'
        "<script>window.NREUM||(NREUM={});NREUM.info="
        + json.dumps({"beacon": hosts.monitoring, "licenseKey": MONITORING_KEY,
                      "applicationID": "1000001"})
        + ";</script>"
        f'<script src="{hosts.monitoring}/nr-spa-1.x.js"></script>'
        # The agent's loader reports the page view; blocked requests must not break it.
        "<script>(function(){try{fetch(" + json.dumps(events)
        + ",{method:'POST',mode:'no-cors',keepalive:true,body:JSON.stringify("
        "{t:'pageview',u:location.pathname})}).catch(function(){});}catch(e){}"
        "window.addEventListener('load',function(){try{navigator.sendBeacon(" + beacon
        + ",'load');}catch(e){}});"
        # Session-replay agents stream over a WebSocket, which no route handler sees.
        "try{new WebSocket(" + json.dumps(live) + ");}catch(e){}})();</script>"
        f'<link rel="preload" as="font" type="font/woff" crossorigin="anonymous" '
        f'href="{hosts.analytics}/fonts/guide-regular.woff">'
    )


def _global_header() -> str:
    return (
        '<header id="main_header"><a href="#main-content-skip" id="skip-to-main-content">'
        'Skip to main content</a><div id="globalHeader" role="navigation">'
        f'<img id="global-logo" alt="Company logo" src="/public_attachments/{LOGO_KEY}'
        '?style=medium"><a href="/order_headers">Orders</a>'
        '<a href="/requisition_headers">Requests</a>'
        '<a href="/sessions/destroy" id="sign_out">Logout</a></div></header>'
    )


def _page_sections() -> str:
    return ('<nav class="sticky" id="page_sections"><ul>'
            '<li><a class="selected" href="#topForm"> General Info </a></li>'
            '<li><a href="#po_lines"> Lines </a></li>'
            '<li><a href="#comments"> Comments </a></li></ul></nav>')


def _related_documents(record_id: str, controller: str) -> str:
    options = json.dumps({"id": int(record_id), "controller": controller, "expanded": False})
    return f'<script class="related_documents_options" type="application/json">{options}</script>'


def _field(label: str, value_html: str) -> str:
    return (f'<div class="form_element wrapper_vertical"><span class="group_label '
            f'label_readonly">{escape(label)}</span>{value_html}</div>')


def _general_info(po: DemoPO, requisition_id: str) -> str:
    requisition_link = (f'<a id="order_header_requisition_header" aria-label="Requisition '
                        f'number {requisition_id}" href="/requisition_headers/{requisition_id}">'
                        f"{requisition_id}</a>")
    return (
        '<div id="topForm" class="header_section"><section class="region '
        'flexVerticalReviewForm"><div class="header"><h2>General Info</h2></div>'
        '<div class="content">'
        + _field("PO Number", f'<span class="data" id="order_header_po_number">'
                 f"{po.po_number}</span>")
        + _field("Status", '<span class="status">Issued</span>')
        + _field("Total", f'<span id="order_header_total">{po.amount}</span> '
                 '<span class="currency">USD</span>')
        + _field("Requisition #", requisition_link)
        + _field("Requester", escape(catalog.COMMENT_AUTHORS[2]))
        + _field("Migrated PO Number", '<span class="show none">None</span>')
        + "</div></section></div>"
    )


def _supplier(po: DemoPO) -> str:
    address = f"{po.supplier} 1 Demo Street, 0000 Sampletown"
    return (
        '<section id="supplier" class="right_header region flexVerticalReviewForm">'
        '<div class="header"><h2>Supplier</h2></div><div class="content">'
        '<div class="fieldWithErrors"><div class="form_element supplier_name_wrapper '
        'wrapper_vertical"><span class="group_label label_readonly">Name</span><span></span>'
        f'<span title="{escape(address)}" class="supplier-name s-coupaSimpleTooltip"> '
        f"{escape(po.supplier)}</span> </div></div></div></section>"
    )


def _lines(po: DemoPO) -> str:
    rows = []
    for n in range(1, LINE_ITEMS + 1):
        line_id = f"{po.digits}{n:03d}"
        stripe = "stripe_even" if n % 2 == 0 else "stripe_odd"
        rows.append(
            f'<tr class="{stripe} coupa_datatable_row coupa_datatable_row_wrapper" '
            f'id="order_line_row_{line_id}" valign="top"><td><div data-id="{line_id}" '
            'class="line-wrapper"><div class="primaryColsContent">'
            f'<div class="wordWrap line_num" aria-label="Line Number {n}">{n}</div>'
            '<div class="form_element col_lg orderLineItem s-orderLineItem">'
            f'<span class="group_label label_readonly">Item</span> Service item {n} '
            f"for {po.po_number}</div>"
            '<div class="form_element orderLineTotal"><span class="group_label '
            f'label_readonly">Total</span><span id="order_line_{line_id}_total">'
            f"{(n * 37) % 1000}.00</span></div></div>"
            '<div class="secondaryCols"><span class="status">Received</span></div>'
            "</div></td></tr>")
    return ('<div id="po_lines"><div id="lines"><div class="header noBorder noMargin">'
            '<h2>Lines</h2></div><div class="datatable_wrapper"><table '
            'id="order_line_table_tag" class="coupa_datatable"><tbody id="order_line_tbody">'
            + "".join(rows) + "</tbody></table></div></div></div>")


def _extra(hosts: Hosts, memory_hog: bool) -> str:
    extra = ""
    if hosts.canary:
        extra += f'<img alt="" class="tracking" src="{escape(hosts.canary)}/pixel.png">'
    if memory_hog:
        extra += ("<script>const hog=[];setInterval(()=>{for(let i=0;i<5;i++)"
                  "hog.push(new Array(250000).fill(Math.random()))},50);</script>")
    return extra


def _buttons(element_id: str, css_class: str, labels: tuple[str, ...]) -> str:
    """The floating button bar: fixed over the bottom of the viewport, as on the real
    page, so it covers whatever the end of the page scrolls to (the attachments)."""
    buttons = "".join(f'<div class="page_button"><a class="rollover button" href="#">'
                      f"<span>{escape(label)}</span></a></div>" for label in labels)
    return (f'<br class="clear"><div class="page_buttons_right {css_class}" id="{element_id}" '
            'style="position:fixed;bottom:0;left:0;right:0;height:140px;z-index:1000;'
            'background:white;border-top:1px solid #ccc;box-shadow:0 -2px 6px rgba(0,0,0,.15)">'
            f"{buttons}</div>")


def _comments_mount() -> str:
    return '<section id="comments"><div id="s-mountCommentsApp"></div></section>'


def _header_attachments(files: tuple[catalog.CoupaFile, ...], owner_id: str) -> str:
    """The header's attachments: spans with no link, downloaded by a click handler."""
    if files:
        items = "".join(
            f'<li><span role="button" tabindex="0" aria-label="{escape(f.attachment.name)} '
            f'file attachment" data-file-id="{f.file_id}">{escape(f.attachment.name)}</span></li>'
            for f in files)
    else:
        items = '<li class="show none">None</li>'
    options = json.dumps({"open_in_window": [f.file_id for f in files
                                             if f.click == catalog.WINDOW]})
    return (
        f'<script id="attachment_options" type="application/json">{options}</script>'
        '<div class="form_element wrapper_vertical" role="group" style="margin:0;padding:0">'
        f'<span class="group_label label_readonly" id="attachments_ul_{owner_id}">'
        f'Attachments</span><div class="attachments attachified attachments_{owner_id}">'
        f'<ul class="attachments-list" aria-labelledby="attachments_ul_{owner_id}">{items}'
        "</ul></div></div>"
    )
