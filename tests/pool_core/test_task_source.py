"""The in-memory task source and PO validation (no browser needed)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from pool_core.messages import Task
from pool_core.task_source import InMemoryTaskSource, tasks_from_po_list


def po(n: int, **extra: object) -> dict:
    return {"po_number": f"PO{n}", "supplier": "Acme", "url": f"http://127.0.0.1/po/{n}",
            "amount": "10.50", **extra}


def test_it_keeps_amounts_decimal_and_extra_columns() -> None:
    (task,) = tasks_from_po_list([po(1, level1="EMEA", level2=3)], batch="b")
    assert task.amount == Decimal("10.50") and isinstance(task.amount, Decimal)
    assert task.extra == (("level1", "EMEA"), ("level2", "3"))
    assert (task.key, task.batch, task.attempt) == ("0", "b", 1)


def test_it_names_the_index_and_field_of_a_bad_po() -> None:
    with pytest.raises(ValueError, match=r"po_list\[2\]\.url: missing"):
        tasks_from_po_list([po(1), po(2), {k: v for k, v in po(3).items() if k != "url"}])
    with pytest.raises(ValueError, match=r"po_list\[0\]: expected a dict"):
        tasks_from_po_list(["PO1"])
    with pytest.raises(ValueError, match="list"):
        tasks_from_po_list("PO1")


def test_it_hands_out_fifo_and_delays_retries() -> None:
    woken: list[int] = []
    source = InMemoryTaskSource(tasks_from_po_list([po(1), po(2)]))
    source.set_wakeup(lambda: woken.append(1))
    first = source.claim()
    assert first is not None and first.po_number == "PO1"
    source.retry(first, delay=0.2)
    assert source.pending() == 2 and source.next_ready_at() is not None
    second = source.claim()
    assert second is not None and second.po_number == "PO2"
    assert source.claim() is None
    time.sleep(0.25)
    again = source.claim()
    assert again is not None and again.po_number == "PO1"
    source.add([Task(key="x", po_number="PO9", supplier="s", url="http://h/", amount=Decimal(1))])
    assert woken == [1] and source.pending() == 1
    assert [t.po_number for t in source.drain()] == ["PO9"] and source.pending() == 0
