"""Every PO the demo site knows, its attachments, and the ground truth.

Special POs (fixed numbers below) each exercise one behaviour of a real site. Any
other number of the form PO2xxxxx is a normal PO with 1-3 attachments derived from
its digits, so batches of any size can be generated (`demo_batch`).

The site has two page shapes. "simple" lists every file as a plain link on the PO
page. "coupa" places each file as a real Coupa page does: a click-only span among the
header attachments (downloaded in the same tab or through a new window), or a link
in a comment that a script renders after the page has loaded; the requisition has its
own id. `expected(po_number, shape=...)` is the ground truth of either shape.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote

from poolsite.demo_erp import filetypes

SUPPLIERS = (
    "Acme Office Supply",
    "Globex Industrial GmbH",
    "Initech Services, Inc.",
    "Umbrella Labs / R&D",
    "Soylent Foods S.A.",
    "Stark Components Ltd.",
)

# Special POs: each is one behaviour of a real procurement site.
NO_ATTACHMENTS = "PO100001"
ONE_PDF = "PO100002"
SEVERAL = "PO100003"
REQUISITION_ONLY = "PO100004"  # attachments live on the requisition (PR fallback)
NOT_FOUND = "PO100005"
ACCESS_DENIED = "PO100006"
RATE_LIMITED = "PO100007"  # 429 with Retry-After for the first RATE_LIMIT_HITS visits
SERVER_ERROR = "PO100008"  # always 500
HANG = "PO100009"  # the page never answers
STALLED_DOWNLOAD = "PO100010"  # one of two attachments stalls forever
STALL_ONCE = "PO100011"  # its attachment stalls on the first download only
MEMORY_HOG = "PO100012"  # the page eats renderer memory
HOSTILE_NAMES = "PO100013"  # attachments with hostile suggested file names
REDIRECT_OUT = "PO100014"  # the page redirects to a host outside the allow-list
SUBREQUEST_OUT = "PO100015"  # loads an image from outside the allow-list (aborted quietly)
# Specials of the coupa shape only (the simple shape does not know these numbers).
COMMENTS_ONLY = "PO100016"  # files only in comments, an inline PDF among them
HEADER_ONLY = "PO100017"  # files only as click-only header spans, one opening a window
TYPE_MISMATCH = "PO100018"  # a ".pdf" whose bytes are a PNG: kept, with a warning
COMMENTS_NEVER_RENDER = "PO100019"  # the comments app fails: the layout is unknown
RATE_LIMIT_HITS = 2
RETRY_AFTER_SECONDS = 1

SPECIALS = (
    NO_ATTACHMENTS, ONE_PDF, SEVERAL, REQUISITION_ONLY, NOT_FOUND, ACCESS_DENIED,
    RATE_LIMITED, SERVER_ERROR, HANG, STALLED_DOWNLOAD, STALL_ONCE, MEMORY_HOG,
    HOSTILE_NAMES, REDIRECT_OUT, SUBREQUEST_OUT,
)
COUPA_SPECIALS = (COMMENTS_ONLY, HEADER_ONLY, TYPE_MISMATCH, COMMENTS_NEVER_RENDER)
# The specials that finish by themselves in the coupa shape (STALL_ONCE after one retry):
# everything but HANG, MEMORY_HOG and STALLED_DOWNLOAD, which need the engine's limits.
COUPA_FINISHING = tuple(
    number for number in SPECIALS + COUPA_SPECIALS
    if number not in (HANG, MEMORY_HOG, STALLED_DOWNLOAD))
NORMAL_START = 200000
# How the special POs end (status, reason); every other PO completes.
OUTCOMES = {
    NO_ATTACHMENTS: ("NO_ATTACHMENTS", ""),
    NOT_FOUND: ("PO_NOT_FOUND", "PO_NOT_FOUND"),
    ACCESS_DENIED: ("ACCESS_DENIED", "ACCESS_DENIED"),
    SERVER_ERROR: ("FAILED", "HTTP_500"),
    HANG: ("TIMEOUT", "TASK_TIMEOUT"),  # pool_core.reasons.Reason.TASK_TIMEOUT
    STALLED_DOWNLOAD: ("PARTIAL", "DOWNLOAD_TIMEOUT"),
    MEMORY_HOG: ("FAILED", "MEMORY_LIMIT"),
    REDIRECT_OUT: ("FAILED", "BLOCKED_URL"),
}
COUPA_OUTCOMES = {**OUTCOMES, COMMENTS_NEVER_RENDER: ("FAILED", "LAYOUT_UNKNOWN")}

SHAPES = ("simple", "coupa")
# Where a file sits on a coupa page (and the ground truth's `source`).
HEADER = "header"
COMMENTS = "comments"
REQUISITION = "requisition"
# How a header span downloads its file: in the same tab, or through a new window.
ASSIGN = "assign"
WINDOW = "open"


@dataclass(frozen=True)
class Attachment:
    """One file the site offers, with the name its server suggests."""

    name: str
    content_type: str
    body: bytes
    source: str  # "po" | "requisition"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass(frozen=True)
class ExpectedPO:
    """What poolsite should end with for one PO.

    In the coupa shape each attachment's `name` is the name the browser suggests (the
    site's own file name) and its `source` is "header", "comments" or "requisition";
    `warnings` names the files whose bytes do not match their extension.
    """

    po_number: str
    status: str
    reason: str
    attachments: tuple[Attachment, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoPO:
    po_number: str
    supplier: str
    amount: Decimal
    kind: str  # "normal" or the special's constant name, lower-case
    po_attachments: tuple[Attachment, ...]
    requisition_attachments: tuple[Attachment, ...]

    @property
    def digits(self) -> str:
        return self.po_number[2:]

    @property
    def requisition_id(self) -> str:
        return "5" + self.digits


def digits_of(po_number: str) -> str:
    return po_number[2:] if po_number[:2].upper() in ("PO", "PM") else po_number


def find(po_number: str, shape: str = "coupa") -> DemoPO | None:
    """Return the demo PO with this number (or digits), or None if the site has none."""
    digits = digits_of(po_number)
    if not digits.isdigit():
        return None
    number = "PO" + digits
    value = int(digits)
    if number in SPECIALS or (shape == "coupa" and number in COUPA_SPECIALS):
        return _special(number)
    if NORMAL_START <= value < NORMAL_START + 1_000_000:
        return _normal(number, value)
    return None


def expected(po_number: str, shape: str = "coupa") -> ExpectedPO:
    """Ground truth for a PO: final status, reason and every file with its sha256."""
    if shape == "coupa":
        return _expected_coupa(po_number)
    po = find(po_number, shape="simple")
    if po is None:
        return ExpectedPO(po_number, "PO_NOT_FOUND", "PO_NOT_FOUND", ())
    outcome = OUTCOMES.get(po.po_number, ("COMPLETED", ""))
    files = po.po_attachments or po.requisition_attachments
    if po.po_number == STALLED_DOWNLOAD:
        files = files[:1]  # the second one never arrives
    if outcome[0] not in ("COMPLETED", "PARTIAL"):
        files = ()
    return ExpectedPO(po.po_number, outcome[0], outcome[1], files)


def po_dict(base_url: str, po_number: str) -> dict:
    """A PO as an upload row / `start_processing` item for the site at `base_url`."""
    po = find(po_number)
    supplier = po.supplier if po else "Unknown Supplier"
    amount = po.amount if po else Decimal("1.00")
    return {
        "po_number": po_number,
        "supplier": supplier,
        "url": f"{base_url.rstrip('/')}/order_headers/{digits_of(po_number)}",
        "amount": amount,
    }


def demo_batch(base_url: str, n: int, start: int = NORMAL_START) -> list[dict]:
    """`n` normal POs (each with 1-3 attachments) for the site at `base_url`."""
    return [po_dict(base_url, f"PO{start + i}") for i in range(n)]


def special_batch(base_url: str) -> list[dict]:
    """The special POs that finish by themselves (no hang, no memory hog)."""
    slow = {HANG, MEMORY_HOG, STALLED_DOWNLOAD}
    return [po_dict(base_url, number) for number in SPECIALS + COUPA_SPECIALS
            if number not in slow]


def coupa_batch(n: int, start: int = NORMAL_START) -> list[str]:
    """`n` PO numbers for an end-to-end run of the coupa shape: every special that
    finishes by itself (`COUPA_FINISHING`), then normal POs up to `n`."""
    specials = list(COUPA_FINISHING[:n])
    return specials + [f"PO{start + i}" for i in range(n - len(specials))]


def _normal(number: str, value: int) -> DemoPO:
    count = 1 + value % 3
    attachments = tuple(_attachment(number, value, i, "po") for i in range(count))
    return DemoPO(
        po_number=number,
        supplier=SUPPLIERS[value % len(SUPPLIERS)],
        amount=Decimal(value % 97_000) + Decimal("0.25") * (value % 4),
        kind="normal",
        po_attachments=attachments,
        requisition_attachments=(),
    )


def _attachment(number: str, value: int, index: int, source: str) -> Attachment:
    kind = (value + index) % 4
    stem = f"{number}-{index + 1}"
    if kind == 0:
        return Attachment(f"{stem} quote.pdf", "application/pdf",
                          filetypes.make_pdf(f"Quote for {number} #{index + 1}", 6000), source)
    if kind == 1:
        rows = [["line", "item", "qty"]] + [[str(i), f"item {i}", str(i * 3)] for i in range(8)]
        return Attachment(f"{stem} lines.xlsx",
                          "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                          filetypes.make_xlsx(rows), source)
    if kind == 2:
        return Attachment(f"{stem} notes.txt", "text/plain",
                          filetypes.make_text([f"Notes for {number}", "Deliver to dock 4."]),
                          source)
    return Attachment(f"{stem} approval.msg", "application/vnd.ms-outlook",
                      filetypes.make_msg(stem), source)


def _special(number: str) -> DemoPO:
    value = int(number[2:])
    po_files: tuple[Attachment, ...] = ()
    req_files: tuple[Attachment, ...] = ()
    if number == ONE_PDF:
        po_files = (Attachment("contract.pdf", "application/pdf",
                               filetypes.make_pdf(f"Contract {number}", 20_000), "po"),)
    elif number == SEVERAL:
        po_files = tuple(_attachment(number, 0, i, "po") for i in range(4))
    elif number == REQUISITION_ONLY:
        req_files = tuple(_attachment(number, 1, i, "requisition") for i in range(2))
    elif number in (RATE_LIMITED, STALL_ONCE, REDIRECT_OUT, SUBREQUEST_OUT, MEMORY_HOG,
                    SERVER_ERROR, HANG):
        po_files = (_attachment(number, value, 0, "po"),)
    elif number == STALLED_DOWNLOAD:
        po_files = (_attachment(number, 0, 0, "po"),
                    Attachment("never-arrives.pdf", "application/pdf",
                               filetypes.make_pdf("never", 1000), "po"))
    elif number == COMMENTS_ONLY:
        po_files = tuple(_attachment(number, 0, i, "po") for i in range(3))
    elif number == HEADER_ONLY:
        po_files = tuple(_attachment(number, 0, i, "po") for i in range(2))
    elif number == TYPE_MISMATCH:
        po_files = (Attachment("scanned-invoice.pdf", "application/pdf",
                               filetypes.make_png(24, 16, (200, 40, 40)), "po"),
                    _attachment(number, 2, 0, "po"))
    elif number == HOSTILE_NAMES:
        po_files = (
            Attachment("../../x.pdf", "application/pdf", filetypes.make_pdf("traversal"), "po"),
            Attachment("CON.txt", "text/plain", filetypes.make_text(["reserved name"]), "po"),
            Attachment("a" * 300 + ".txt", "text/plain", filetypes.make_text(["long"]), "po"),
            Attachment("..\\..\\win.txt", "text/plain", filetypes.make_text(["backslash"]), "po"),
        )
    return DemoPO(
        po_number=number,
        supplier=SUPPLIERS[value % len(SUPPLIERS)],
        amount=Decimal("1234.56"),
        kind=number.lower(),
        po_attachments=po_files,
        requisition_attachments=req_files,
    )


# -- the coupa shape ---------------------------------------------------------------------

@dataclass(frozen=True)
class CoupaFile:
    """One file on a coupa-shape page: where it sits and how the page downloads it."""

    file_id: str
    index: int  # its position among the PO's (or the requisition's) attachments
    attachment: Attachment
    on_requisition: bool
    place: str  # HEADER (a click-only span) | COMMENTS (a link in a rendered comment)
    click: str  # header spans: ASSIGN (same tab) | WINDOW (a new window); "" in comments

    @property
    def site_name(self) -> str:
        return site_name(self.attachment.name)

    @property
    def source(self) -> str:
        return REQUISITION if self.on_requisition else self.place

    @property
    def inline(self) -> bool:
        """PDFs linked from comments open in the browser instead of downloading."""
        return self.place == COMMENTS and self.attachment.content_type == "application/pdf"

    @property
    def path(self) -> str:
        return f"/attachment/attachment_file/file/{self.file_id}/{quote(self.site_name)}"


@dataclass(frozen=True)
class Comment:
    author: str
    text: str
    commented_at: str
    files: tuple[CoupaFile, ...]


COMMENT_AUTHORS = ("Pat Buyer", "Sam Approver", "Alex Requester", "Robin Receiver")
# Each special's files, in order: (place, click) per PO file; its requisition's files
# follow the same rule through _REQUISITION_LAYOUT.
_COUPA_LAYOUT: dict[str, tuple[tuple[str, str], ...]] = {
    SEVERAL: ((COMMENTS, ""), (HEADER, ASSIGN), (COMMENTS, ""), (HEADER, WINDOW)),
    COMMENTS_ONLY: ((COMMENTS, ""), (COMMENTS, ""), (COMMENTS, "")),
    HEADER_ONLY: ((HEADER, ASSIGN), (HEADER, WINDOW)),
    TYPE_MISMATCH: ((HEADER, ASSIGN), (COMMENTS, "")),
}
_REQUISITION_LAYOUT: dict[str, tuple[tuple[str, str], ...]] = {
    REQUISITION_ONLY: ((HEADER, ASSIGN), (COMMENTS, "")),
}
# The requisition id is a permutation of the PO's digits (not a prefix of them), so it
# looks unrelated, as on a real site, yet maps back to its PO without a table.
_REQ_MODULUS = 9_000_000
_REQ_FACTOR = 7_919_993  # coprime with the modulus, hence invertible
_REQ_OFFSET = 4_242_421


def site_name(name: str) -> str:
    """The site's own file name: spaces and punctuation but `.-_()` become `_`."""
    return "".join(c if c.isalnum() or c in ".-_()" else "_" for c in name)


def coupa_requisition_id(po: DemoPO) -> str:
    value = int(po.digits)
    return str(1_000_000 + (value * _REQ_FACTOR + _REQ_OFFSET) % _REQ_MODULUS)


def po_of_requisition(requisition_id: str) -> DemoPO | None:
    """The coupa-shape PO whose requisition has this id, or None."""
    if not requisition_id.isdigit() or not 1_000_000 <= int(requisition_id) < 10_000_000:
        return None
    scrambled = int(requisition_id) - 1_000_000 - _REQ_OFFSET
    value = scrambled * pow(_REQ_FACTOR, -1, _REQ_MODULUS) % _REQ_MODULUS
    return find(str(value), shape="coupa")


def coupa_files(po: DemoPO) -> tuple[CoupaFile, ...]:
    """Every file of the PO and of its requisition, placed as the coupa shape shows them."""
    files = [_placed(po, a, i, False) for i, a in enumerate(po.po_attachments)]
    files += [_placed(po, a, i, True) for i, a in enumerate(po.requisition_attachments)]
    return tuple(files)


def coupa_file(file_id: str) -> tuple[DemoPO, CoupaFile] | None:
    """The file behind an attachment URL's id (`13<po digits><slot>`), or None."""
    if not (file_id.isdigit() and file_id.startswith("13") and len(file_id) > 4):
        return None
    po = find(file_id[2:-2], shape="coupa")
    for file in coupa_files(po) if po else ():
        if file.file_id == file_id:
            assert po is not None
            return po, file
    return None


def header_files(po: DemoPO, on_requisition: bool = False) -> tuple[CoupaFile, ...]:
    return tuple(f for f in coupa_files(po)
                 if f.on_requisition == on_requisition and f.place == HEADER)


def coupa_comments(po: DemoPO, on_requisition: bool = False) -> tuple[Comment, ...]:
    """The comments the page's comments app renders: notes, and one per file."""
    if po.po_number == NO_ATTACHMENTS:
        return ()  # a PO nobody discussed: the section shows 0 comments
    value = int(po.digits)
    document = "requisition" if on_requisition else "order"
    comments = [Comment(COMMENT_AUTHORS[value % 2], f"Approved the {document}.",
                        f"08/{10 + value % 18:02d}/25 at 09:{value % 60:02d} AM", ())]
    files = [f for f in coupa_files(po)
             if f.on_requisition == on_requisition and f.place == COMMENTS]
    for n, file in enumerate(files):
        comments.append(Comment(COMMENT_AUTHORS[(value + n + 2) % len(COMMENT_AUTHORS)],
                                "Please find the document attached.",
                                f"08/{9 + n:02d}/25 at 10:{(value + n) % 60:02d} AM", (file,)))
    return tuple(reversed(comments))  # newest first, as the real list


def _placed(po: DemoPO, attachment: Attachment, index: int, on_requisition: bool) -> CoupaFile:
    layout = (_REQUISITION_LAYOUT if on_requisition else _COUPA_LAYOUT).get(po.po_number)
    if layout is not None:
        place, click = layout[index]
    elif po.kind == "normal":
        place, click = _normal_placement(po.po_number, index)
    else:
        place, click = HEADER, ASSIGN
    slot = index + (50 if on_requisition else 0)
    return CoupaFile(f"13{po.digits}{slot:02d}", index, attachment, on_requisition,
                     place, click)


def _normal_placement(number: str, index: int) -> tuple[str, str]:
    """Split a normal PO's files between header spans and comments, by a stable hash."""
    seed = hashlib.sha256(f"{number}:{index}".encode()).digest()
    if seed[0] % 2:
        return COMMENTS, ""
    return HEADER, WINDOW if seed[1] % 3 == 0 else ASSIGN


def _expected_coupa(po_number: str) -> ExpectedPO:
    po = find(po_number, shape="coupa")
    if po is None:
        return ExpectedPO(po_number, "PO_NOT_FOUND", "PO_NOT_FOUND", ())
    outcome = COUPA_OUTCOMES.get(po.po_number, ("COMPLETED", ""))
    files = coupa_files(po)
    chosen = [f for f in files if not f.on_requisition] or list(files)
    if po.po_number == STALLED_DOWNLOAD:
        chosen = chosen[:1]  # the second one never arrives
    if outcome[0] not in ("COMPLETED", "PARTIAL"):
        chosen = []
    attachments = tuple(
        Attachment(f.site_name, f.attachment.content_type, f.attachment.body, f.source)
        for f in chosen)
    warnings = tuple(a.name for a in attachments if not filetypes.matches_name(a.name, a.body))
    return ExpectedPO(po.po_number, outcome[0], outcome[1], attachments, warnings)
