"""HTML of the demo site, in the shape of Coupa's pages (ids, classes, texts)."""

from __future__ import annotations

from html import escape

from poolsite.demo_erp.catalog import DemoPO

NOT_FOUND_TEXT = "Oops! We couldn't find what you wanted"
ACCESS_DENIED_TEXT = "You are not authorized to view this page. Access denied."


def layout(title: str, body: str, signed_in: bool = True) -> str:
    nav = ('<nav><a href="/order_headers">Orders</a> <a href="/requisition_headers">Requests'
           '</a> <a href="/sessions/destroy">Sign out</a></nav>') if signed_in else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}"
            f"</title><style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 8px}}"
            f"</style></head><body><header><b>Demo ERP</b> {nav}</header>"
            f"<main>{body}</main></body></html>")


def login(return_to: str, error: str = "") -> str:
    flash = f'<div class="flash_error">{escape(error)}</div>' if error else ""
    return layout("Sign in", (
        f"<h1>Sign in to Demo ERP</h1>{flash}"
        f'<form id="new_user" method="post" action="/sessions">'
        f'<input type="hidden" name="return_to" value="{escape(return_to)}">'
        '<label>Email <input id="user_email" name="user[email]" type="email"></label>'
        '<label>Password <input id="user_password" name="user[password]" type="password">'
        '</label><button type="submit">Sign in</button></form>'
    ), signed_in=False)


def orders_index() -> str:
    return layout("Orders", "<h1>Purchase orders</h1><p id='signed_in'>Signed in.</p>")


def not_found() -> str:
    return layout("Not found", (
        f'<div class="flash_error">{NOT_FOUND_TEXT}</div>'
        '<div id="error_explanation">The record does not exist or was removed.</div>'))


def access_denied() -> str:
    return layout("Access denied", f"<h1>{ACCESS_DENIED_TEXT}</h1>")


def server_error() -> str:
    return "<html><body><h1>We're sorry, but something went wrong.</h1></body></html>"


def rate_limited() -> str:
    return "<html><body><h1>Too many requests</h1></body></html>"


def purchase_order(po: DemoPO, canary_url: str = "", memory_hog: bool = False) -> str:
    rows = "".join(
        f'<li><a href="/attachments/{po.digits}/{i}" title="attachment">{escape(a.name)}</a>'
        f" ({a.size} bytes)</li>"
        for i, a in enumerate(po.po_attachments)
    )
    attachments = f'<ul class="attachments">{rows}</ul>' if rows else "<p>No attachments.</p>"
    extra = ""
    if canary_url:
        extra += f'<img alt="tracker" src="{escape(canary_url)}/pixel.png">'
    if memory_hog:
        extra += ("<script>const hog=[];setInterval(()=>{for(let i=0;i<5;i++)"
                  "hog.push(new Array(250000).fill(Math.random()))},50);</script>")
    return layout(f"PO {po.po_number}", (
        f'<h1>Purchase Order #{po.po_number}</h1>'
        f'<table class="header"><tr><th>Supplier</th><td id="supplier_name">'
        f"{escape(po.supplier)}</td></tr>"
        f"<tr><th>Total</th><td id='po_total'>{po.amount} USD</td></tr></table>"
        f"<h2>Attachments</h2>{attachments}"
        f'<p>Requisition: <a href="/requisition_headers/{po.requisition_id}">'
        f"Requisition {po.requisition_id}</a></p>{extra}"
    ))


def requisition(po: DemoPO) -> str:
    rows = "".join(
        f'<li><a href="/attachments/r{po.digits}/{i}" title="attachment">{escape(a.name)}</a></li>'
        for i, a in enumerate(po.requisition_attachments)
    )
    attachments = f'<ul class="attachments">{rows}</ul>' if rows else "<p>No attachments.</p>"
    return layout(f"Requisition {po.requisition_id}", (
        f"<h1>Requisition #{po.requisition_id}</h1>"
        f"<p>For purchase order {po.po_number}</p><h2>Attachments</h2>{attachments}"))
