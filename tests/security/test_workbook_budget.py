"""A workbook within the upload limits but expensive to parse is refused before openpyxl,
and the confirm step does not parse an accepted one a second time.

The attack: a 16.9 MB XLSX whose shared-strings part unpacks to 126 MB (a modest
compression ratio, far under the zip-bomb test) was accepted after 58 s and left the
server at 1.35 GB; confirming parsed it all again.
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

from poolsite.batches import views
from poolsite.batches.batch_import import parse_upload
from poolsite.batches.models import Batch, Site
from poolsite.batches.upload_read import MAX_XLSX_RATIO, MAX_XLSX_SHARED_STRINGS
from tests.poolsite.badfiles import GOOD_XLSX_ROWS, rezip, xlsx
from tests.poolsite.base import BaseTestCase

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_workbook_memory.py"
NS = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


def expensive_workbook(strings_bytes: int) -> bytes:
    """A valid workbook whose shared-strings table unpacks to about `strings_bytes`.

    The strings are distinct and partly random, so the part compresses like real text
    (~10-30x), not like a zip bomb: only its unpacked size gives it away.
    """
    good = xlsx(GOOD_XLSX_ROWS)
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
        rels = archive.read("xl/_rels/workbook.xml.rels")
        types = archive.read("[Content_Types].xml")
    # openpyxl writes inline strings: move them into a shared-strings table.
    strings: list[bytes] = []

    def shared(match: re.Match[bytes]) -> bytes:
        strings.append(match.group(1))
        return b't="s"><v>%d</v>' % (len(strings) - 1)

    sheet = re.sub(rb't="inlineStr"><is><t>([^<]*)</t></is>', shared, sheet)
    rng = random.Random(7)
    size = 0
    while size < strings_bytes:
        strings.append(b"%s Supplier %s" % (rng.randbytes(12).hex().encode(),
                                            b"Acme Office Supply International" * 2))
        size += len(strings[-1]) + 16
    table = (b'<sst %s count="%d" uniqueCount="%d">' % (NS, len(strings), len(strings))
             + b"".join(b"<si><t>%s</t></si>" % text for text in strings) + b"</sst>")
    rels = rels.replace(b"</Relationships>", (
        b'<Relationship Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        b'relationships/sharedStrings" Target="sharedStrings.xml" Id="rId9" />'
        b"</Relationships>"))
    types = types.replace(b"</Types>", (
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'))
    parts = {"xl/worksheets/sheet1.xml": sheet, "xl/_rels/workbook.xml.rels": rels,
             "[Content_Types].xml": types}
    return _with_part(rezip(good, parts), "xl/sharedStrings.xml", table)


def _with_part(data: bytes, name: str, content: bytes) -> bytes:
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return out.getvalue()


def test_the_generated_workbook_reads_when_small() -> None:
    upload = parse_upload(expensive_workbook(1000), filename="small.xlsx", preset="demo")
    assert upload.ok, upload.problems
    assert upload.rows[0].supplier == "Acme Office Supply"


def test_an_expensive_shared_strings_table_is_refused_quickly_naming_the_part() -> None:
    data = expensive_workbook(MAX_XLSX_SHARED_STRINGS + 4 * 1024 * 1024)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("xl/sharedStrings.xml")
    assert info.file_size / info.compress_size < MAX_XLSX_RATIO  # not a "zip bomb"
    assert len(data) < 3 * 1024 * 1024
    started = time.monotonic()
    upload = parse_upload(data, filename="expensive.xlsx", preset="demo")
    took = time.monotonic() - started
    assert not upload.ok
    message = str(upload.problems[0])
    assert "workbook part xl/sharedStrings.xml unpacks to" in message, message
    assert f"the limit is {MAX_XLSX_SHARED_STRINGS:,} bytes" in message
    assert took < 2.0, f"refused only after {took:.1f} s"


def test_the_memory_of_an_accepted_expensive_workbook_is_returned(tmp_path: Path) -> None:
    """The most expensive workbook the reader accepts, parsed in a fresh interpreter:
    the freed heap goes back to the system (it stayed: +40 MiB kept of a +42 MiB peak).
    Figures, side by side with the step off: bench/bench_workbook_memory.py."""
    path = tmp_path / "budget.xlsx"
    path.write_bytes(expensive_workbook(MAX_XLSX_SHARED_STRINGS - 512 * 1024))
    out = subprocess.run([sys.executable, str(BENCH), "--child", str(path), "--release"],
                         capture_output=True, text=True, check=True, timeout=120)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["rows"] == len(GOOD_XLSX_ROWS) - 1
    assert figures["peak"] - figures["baseline"] > 25, figures  # it did cost memory
    assert figures["after"] - figures["baseline"] < 20, figures  # and gave it back


def test_a_huge_sheet_part_is_refused_too() -> None:
    good = xlsx(GOOD_XLSX_ROWS)
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    rng = random.Random(3)
    padding = b"".join(b"<!-- %s -->" % rng.randbytes(8).hex().encode() * 40
                       for _ in range(70_000))
    data = rezip(good, {"xl/worksheets/sheet1.xml": sheet.replace(b"</worksheet>",
                                                                  padding + b"</worksheet>")})
    upload = parse_upload(data, filename="wide.xlsx", preset="demo")
    assert not upload.ok
    assert "workbook part xl/worksheets/sheet1.xml unpacks to" in str(upload.problems[0])


class ConfirmTestCase(BaseTestCase):
    def _upload(self) -> Any:
        self.client.force_login(self.alice)
        site = self.make_site()
        data = xlsx([["PO Number", "Supplier", "Amount", "Region"],
                     *[[f"PO{400000 + i}", f"Supplier {i}", 10 + i, "EU"] for i in range(50)]])
        response = self.client.post("/batches/upload/", {
            "file": _named(data, "march.xlsx"), "site": site.name, "name": "March"})
        assert response.status_code == 200, response.content[:500]
        initial = response.context["confirm"].initial
        return {**initial, "site": site.name}

    def _confirm(self, initial: dict[str, Any]) -> Any:
        return self.client.post("/batches/upload/confirm/",
                                {k: v for k, v in initial.items() if v is not None})

    def test_the_confirm_step_reuses_the_previews_parse(self) -> None:
        initial = self._upload()
        with mock.patch.object(views, "parse_upload", side_effect=parse_upload) as parse:
            response = self._confirm(initial)
        assert response.status_code == 302
        assert parse.call_count == 0, "the confirm step parsed the workbook again"
        batch = Batch.objects.get()
        assert batch.po_count == 50 and batch.extra_columns == ["Region"]
        assert batch.source_name == "march.xlsx"
        first = batch.pos.order_by("row_number").first()
        assert first is not None and (first.po_number, str(first.amount), first.extra) == (
            "PO400000", "10.0000", {"Region": "EU"})
        assert not list((self.tmp / "upload-previews").glob("*.json"))  # not kept after

    def test_without_a_kept_preview_it_parses_again(self) -> None:
        initial = self._upload()
        for path in (self.tmp / "upload-previews").glob("*.json"):
            path.unlink()
        with mock.patch.object(views, "parse_upload", side_effect=parse_upload) as parse:
            response = self._confirm(initial)
        assert response.status_code == 302 and parse.call_count == 1
        assert Batch.objects.get().po_count == 50

    def test_other_options_than_the_preview_mean_a_fresh_parse(self) -> None:
        initial = self._upload()
        with mock.patch.object(views, "parse_upload", side_effect=parse_upload) as parse:
            response = self._confirm({**initial, "sheet": "Nope"})
        assert parse.call_count == 1
        assert response.status_code == 400  # no sheet named 'Nope'
        assert not Batch.objects.exists()

    def test_a_site_changed_since_the_preview_means_a_fresh_parse(self) -> None:
        initial = self._upload()
        site = Site.objects.get()
        site.extra_hosts = ["files.example.com"]  # its allow-list is not the preview's
        site.save()
        with mock.patch.object(views, "parse_upload", side_effect=parse_upload) as parse:
            response = self._confirm(initial)
        assert response.status_code == 302 and parse.call_count == 1

def _named(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle
