"""The coupa shape's static assets: the tenant's own scripts and stylesheet, and the
small bodies its third-party hosts (analytics, monitoring) answer with.

The page's behaviour lives here as on the real site: header attachments are spans a
script makes clickable, and comments are rendered by a script after `load`.
"""

from __future__ import annotations

# Header attachments: click (or Enter) on a span downloads its file, either in this tab
# or through a new window; which one is per file, from the page's JSON options.
ORDER_HEADERS_COMMON_JS = r"""
(function () {
  "use strict";
  function options() {
    var node = document.getElementById("attachment_options");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }
  function siteName(name) {
    return name.replace(/[^\p{L}\p{N}._\-()]/gu, "_");
  }
  function download(span) {
    var id = span.getAttribute("data-file-id");
    var url = "/attachment/attachment_file/file/" + id + "/" +
      encodeURIComponent(siteName(span.textContent.trim()));
    if ((options().open_in_window || []).indexOf(id) >= 0) {
      window.open(url, "_blank");
    } else {
      window.location.assign(url);
    }
  }
  function spanOf(event) {
    var target = event.target;
    return target && target.closest ? target.closest(".attachments-list [data-file-id]") : null;
  }
  document.addEventListener("click", function (event) {
    var span = spanOf(event);
    if (span) { event.preventDefault(); download(span); }
  });
  document.addEventListener("keydown", function (event) {
    var span = event.key === "Enter" ? spanOf(event) : null;
    if (span) { event.preventDefault(); download(span); }
  });
})();
"""

# The comments app: after `load`, fetch the document's comments and render them into
# #s-mountCommentsApp. When the fetch fails nothing is rendered, as on the real site.
COMMENTS_JS = r"""
(function () {
  "use strict";
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function commentsUrl() {
    var root = document.documentElement;
    var url = "/" + root.dataset.controller + "/" + root.dataset.id + "/comments.json";
    var delay = new URLSearchParams(window.location.search).get("comments_delay");
    return delay === null ? url : url + "?comments_delay=" + encodeURIComponent(delay);
  }
  function attachments(files) {
    return el("div", {"class": "form_element commentAttachments attachmentsContainer"}, [
      el("ul", {"class": "attachments__list s-attachmentList"}, files.map(function (file) {
        return el("li", {"class": "attachment attachmentFile s-attachmentFile",
                         "aria-label": "Attachments File"}, [
          el("a", {"href": file.url, "target": "_blank", "title": file.name,
                   "rel": "noreferrer noopener"}, [file.name]),
          el("div", {"class": "attachment__action"})]);
      }))]);
  }
  function comment(item) {
    var children = [
      el("div", {"class": "comments_avatar s-commentAvatar"},
         [el("div", {"class": "default_avatar_thumb"})]),
      el("div", {"class": "comment_author"}, [
        el("span", {"class": "name s-commentAuthor"}, [item.author]),
        el("span", {"class": "timestamp s-commentedAt"}, [item.commented_at])]),
      el("div", {"class": "comment_text s-commentMessage"}, [item.text])];
    if (item.files.length) { children.push(attachments(item.files)); }
    return el("li", {"class": "comment s-comment"}, children);
  }
  function render(mount, data) {
    var section = el("section", {
      "class": "expandable-section s-expandableSection commentsSection s-commentsSection"}, [
      el("div", {"class": "header s-header"}, [el("h2", {}, [
        el("span", {"class": "s-headerIcon header_icon headerIcon num_comments s-numComments"},
           [String(data.comments.length)]),
        el("span", {}, ["Comments"])])]),
      el("div", {"class": "sectionContent s-sectionContent"}, [
        el("ul", {"class": "comments_list s-commentList"}, data.comments.map(comment))])]);
    mount.appendChild(section);
  }
  window.addEventListener("load", function () {
    var mount = document.getElementById("s-mountCommentsApp");
    if (!mount) { return; }
    fetch(commentsUrl(), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("comments: HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) { render(mount, data); })
      .catch(function (error) { console.error(error); });
  });
})();
"""

ORDER_HEADERS_COMMON_CSS = """
body { margin: 0; font-family: "Open Sans", Arial, sans-serif; font-size: 13px; color: #333; }
#main_header { background: #0b3b60; color: white; padding: 8px 16px; }
#main_header a { color: white; margin-right: 12px; }
#global-logo { height: 24px; vertical-align: middle; margin-right: 16px; }
#pageHeader { font-size: 22px; margin: 16px; }
#page_sections ul { list-style: none; display: flex; gap: 16px; margin: 0 16px; padding: 0; }
.content.wide { margin: 0 16px; }
.region { border: 1px solid #ddd; margin: 12px 0; padding: 8px 12px; }
.form_element { margin: 4px 0; }
.group_label { display: inline-block; min-width: 160px; font-weight: 600; }
.coupa_datatable { width: 100%; border-collapse: collapse; }
.coupa_datatable_row td { border-bottom: 1px solid #eee; padding: 6px 0; }
.line-wrapper { min-height: 64px; }
.primaryColsContent { display: flex; gap: 24px; }
.page_button { display: inline-block; margin: 12px 8px; }
.button { border: 1px solid #888; border-radius: 4px; padding: 6px 14px; background: #f4f4f4;
  color: #222; text-decoration: none; }
#comments { margin: 12px 0; }
.comments_list { list-style: none; padding: 0; }
.comment { border-top: 1px solid #eee; padding: 6px 0; }
.s-numComments, .s-commentAuthor { margin-right: 6px; }
.attachments-list { margin: 0; padding: 0 0 0 16px; line-height: 18px; }
.attachments-list [data-file-id] { color: #06c; cursor: pointer; white-space: nowrap; }
"""

# What the third-party hosts answer: harmless scripts that only announce themselves.
ANALYTICS_JS = "window.pendo = window.pendo || {loaded: true};\n"
MONITORING_JS = "window.NREUM = window.NREUM || {}; window.NREUM.loaded = true;\n"

TENANT_ASSETS = {
    "order_headers_common.js": ("application/javascript", ORDER_HEADERS_COMMON_JS),
    "comments.js": ("application/javascript", COMMENTS_JS),
    "order_headers_common.css": ("text/css", ORDER_HEADERS_COMMON_CSS),
}
