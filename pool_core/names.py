"""Safe file and folder names from untrusted text.

po_number, supplier and a server's suggested file name all come from outside (an
uploaded sheet, a web page, a Content-Disposition header). Each becomes one path
component that is portable (Linux, Windows shares, macOS), short enough for every
file system, and can never climb out of the output root:

    safe_component("../../etc")         -> "_.._etc"
    safe_filename("CON.txt")            -> "_CON.txt"
    dedupe("a.pdf", {"a.pdf"})          -> "a (2).pdf"
    inside(root, root / "x" / "a.pdf")  -> the resolved path, or UnsafePathError
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from pool_core.errors import UnsafePathError

# Bytes, not characters: ext4 and most others cap a name at 255 bytes, and a UTF-8
# character may take four. Leave room for " (99)" and a hidden-work prefix.
MAX_NAME_BYTES = 180
MAX_EXTENSION_CHARS = 16
# Windows refuses these as a name or a stem on any share (CON, CON.txt, com1.pdf).
RESERVED_STEMS = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in range(10)] + [f"LPT{i}" for i in range(10)]
    + ["COM¹", "COM²", "COM³", "LPT¹", "LPT²", "LPT³"]
)
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_RUNS = re.compile(r"[ _]{2,}")


def safe_component(text: str, fallback: str = "_", max_bytes: int = MAX_NAME_BYTES) -> str:
    """Turn untrusted text into one path component (no separators, no '..', not reserved)."""
    name = unicodedata.normalize("NFC", str(text))
    name = _UNSAFE_CHARS.sub("_", name)
    name = "".join(c if c.isprintable() else "_" for c in name)
    name = _RUNS.sub(lambda m: m.group(0)[0], name)
    # Leading dots hide a file (or make '..'); trailing dots and spaces vanish on Windows.
    name = name.strip(" ").lstrip(".").rstrip(". ")
    if not name.strip("_"):
        name = fallback
    if name.split(".")[0].upper().rstrip(" ") in RESERVED_STEMS:
        name = "_" + name
    return _cap_bytes(name, max_bytes).rstrip(". ") or fallback


def safe_filename(text: str, fallback: str = "attachment", max_bytes: int = MAX_NAME_BYTES) -> str:
    """Like safe_component, but keep a short extension when the name is capped."""
    name = safe_component(text, fallback=fallback, max_bytes=10_000)
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > MAX_EXTENSION_CHARS or not ext.isalnum():
        return _cap_bytes(name, max_bytes).rstrip(". ") or fallback
    ext_bytes = len(ext.encode("utf-8")) + 1
    stem = _cap_bytes(stem, max_bytes - ext_bytes).rstrip(". ") or "_"
    return f"{stem}.{ext}"


def dedupe(name: str, taken: set[str]) -> str:
    """Return `name`, or `name (2)`, `name (3)`... not in `taken` (case-insensitively); claim it.

    Case-insensitive because the folder may be read through a Windows or macOS share,
    where `A.pdf` and `a.pdf` are the same file.
    """
    lowered = {t.lower() for t in taken}
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = name, "", ""
    candidate = name
    counter = 1
    while candidate.lower() in lowered:
        counter += 1
        candidate = f"{stem} ({counter}){dot}{ext}"
    taken.add(candidate)
    return candidate


def inside(root: Path, path: Path) -> Path:
    """Resolve `path` and prove it lies inside `root` (symlinks followed); return it."""
    resolved_root = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafePathError(f"{path} resolves outside the output root {root}")
    return resolved


def _cap_bytes(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")
