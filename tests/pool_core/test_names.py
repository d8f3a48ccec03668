"""Untrusted names never escape the output root and stay portable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pool_core.errors import UnsafePathError
from pool_core.names import MAX_NAME_BYTES, dedupe, inside, safe_component, safe_filename
from pool_core.po_folder import final_folder

HOSTILE = [
    "../../x", "..\\x", "..\\..\\win.txt", "CON", "con.txt", "NUL", "nul.pdf", "COM1.doc",
    "LPT9", "a\x00b.pdf", "a" * 300, "a" * 300 + ".pdf", "/etc/passwd", "\\\\server\\share",
    ".", "..", "...", "", "   ", ".hidden", "name. ", "tab\there", "new\nline.pdf",
    "ü" * 200 + ".xlsx", "C:\\Windows\\system32", "a/../../b", "|<>:*?\"", "\u202egnp.exe",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_it_turns_hostile_text_into_one_safe_component(text: str) -> None:
    for name in (safe_component(text), safe_filename(text)):
        assert name and name not in (".", "..")
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".") and not name.endswith((".", " "))
        assert all(c.isprintable() for c in name)
        assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
        assert name.split(".")[0].upper() not in ("CON", "NUL", "COM1", "LPT9", "PRN", "AUX")


@pytest.mark.parametrize("text", HOSTILE)
def test_it_keeps_every_hostile_po_and_supplier_inside_the_root(text: str,
                                                                 tmp_path: Path) -> None:
    root = tmp_path / "out"
    folder = final_folder(root, text, text, text)
    assert root.resolve() in folder.parents
    target = folder / safe_filename(text)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"x")
    assert inside(root, target) == target.resolve()
    # Nothing was created outside the root.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_it_keeps_the_extension_when_it_caps_a_long_name() -> None:
    name = safe_filename("a" * 300 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= MAX_NAME_BYTES
    assert safe_filename("ü" * 300 + ".xlsx").endswith(".xlsx")


def test_it_prefixes_reserved_windows_names() -> None:
    assert safe_filename("CON.txt") == "_CON.txt"
    assert safe_component("nul") == "_nul"
    assert safe_filename("console.txt") == "console.txt"


def test_it_numbers_colliding_names_case_insensitively() -> None:
    taken: set[str] = {"manifest.json"}
    assert dedupe("a.pdf", taken) == "a.pdf"
    assert dedupe("A.pdf", taken) == "A (2).pdf"
    assert dedupe("a.pdf", taken) == "a (3).pdf"
    assert dedupe("README", taken) == "README"
    assert dedupe("readme", taken) == "readme (2)"
    assert dedupe("Manifest.JSON", taken) == "Manifest (2).JSON"


def test_it_refuses_a_path_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    with pytest.raises(UnsafePathError):
        inside(root, root / ".." / "x")
    with pytest.raises(UnsafePathError):
        inside(root, Path("/etc/passwd"))
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        inside(root, root / "link" / "x")
