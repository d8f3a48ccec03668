"""Every PO the demo site knows, its attachments, and the ground truth.

Special POs (fixed numbers below) each exercise one behaviour of a real site. Any
other number of the form PO2xxxxx is a normal PO with 1-3 attachments derived from
its digits, so batches of any size can be generated (`demo_batch`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

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
RATE_LIMIT_HITS = 2
RETRY_AFTER_SECONDS = 1

SPECIALS = (
    NO_ATTACHMENTS, ONE_PDF, SEVERAL, REQUISITION_ONLY, NOT_FOUND, ACCESS_DENIED,
    RATE_LIMITED, SERVER_ERROR, HANG, STALLED_DOWNLOAD, STALL_ONCE, MEMORY_HOG,
    HOSTILE_NAMES, REDIRECT_OUT, SUBREQUEST_OUT,
)
NORMAL_START = 200000


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
    """What poolsite should end with for one PO."""

    po_number: str
    status: str
    reason: str
    attachments: tuple[Attachment, ...]


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


def find(po_number: str) -> DemoPO | None:
    """Return the demo PO with this number (or digits), or None if the site has none."""
    digits = digits_of(po_number)
    if not digits.isdigit():
        return None
    number = "PO" + digits
    value = int(digits)
    if number in SPECIALS:
        return _special(number)
    if NORMAL_START <= value < NORMAL_START + 1_000_000:
        return _normal(number, value)
    return None


def expected(po_number: str) -> ExpectedPO:
    """Ground truth for a PO: final status, reason and every file with its sha256."""
    po = find(po_number)
    if po is None:
        return ExpectedPO(po_number, "PO_NOT_FOUND", "PO_NOT_FOUND", ())
    outcome = {
        NO_ATTACHMENTS: ("NO_ATTACHMENTS", ""),
        NOT_FOUND: ("PO_NOT_FOUND", "PO_NOT_FOUND"),
        ACCESS_DENIED: ("ACCESS_DENIED", "ACCESS_DENIED"),
        SERVER_ERROR: ("FAILED", "HTTP_500"),
        HANG: ("TIMEOUT", "TIMEOUT"),
        STALLED_DOWNLOAD: ("PARTIAL", "DOWNLOAD_TIMEOUT"),
        MEMORY_HOG: ("FAILED", "MEMORY_LIMIT"),
        REDIRECT_OUT: ("FAILED", "BLOCKED_URL"),
    }.get(po.po_number, ("COMPLETED", ""))
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
    return [po_dict(base_url, number) for number in SPECIALS if number not in slow]


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
