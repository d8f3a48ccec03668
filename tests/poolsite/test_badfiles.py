"""Every bad file is refused with a message naming where the problem is, and nothing
is stored: not by the importer, not by the command, not by the web form."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from poolsite.batches.batch_import import ImportRefused, batch_import, parse_upload
from poolsite.batches.models import Batch, PurchaseOrder
from tests.poolsite.badfiles import BadFile, corpus

CORPUS = corpus()


def test_it_has_a_corpus_of_at_least_thirty_files() -> None:
    assert len(CORPUS) >= 30
    assert len({bad.name for bad in CORPUS}) == len(CORPUS)


@pytest.mark.django_db
@pytest.mark.parametrize("bad", CORPUS, ids=[bad.name for bad in CORPUS])
def test_it_refuses_a_bad_file_with_its_message(bad: BadFile) -> None:
    with override_settings(**bad.settings):
        upload = parse_upload(bad.data, filename=bad.name, preset=bad.preset, sheet=bad.sheet)
        assert not upload.ok
        text = "\n".join(str(problem) for problem in upload.problems)
        for expected in bad.expected:
            assert expected in text, f"{expected!r} not in:\n{text}"
        with pytest.raises(ImportRefused):
            batch_import(bad.data, filename=bad.name, preset=bad.preset, sheet=bad.sheet)
    assert not Batch.objects.exists()
    assert not PurchaseOrder.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("bad", CORPUS[:6] + CORPUS[-8:],
                         ids=[bad.name for bad in CORPUS[:6] + CORPUS[-8:]])
def test_it_refuses_a_bad_file_from_the_command_line(bad: BadFile, tmp_path, capsys) -> None:
    path = tmp_path / bad.name
    path.write_bytes(bad.data)
    args = [str(path), "--site", bad.preset] + (["--sheet", bad.sheet] if bad.sheet else [])
    with override_settings(**bad.settings), pytest.raises(CommandError, match="nothing was"):
        call_command("import_batch", *args)
    assert bad.expected[0] in capsys.readouterr().err
    assert not Batch.objects.exists()
