"""Users in each role and a batch, for the dashboard's view and consumer tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from poolsite.batches.models import Batch, PurchaseOrder
from poolsite.batches.roles import OPERATOR_CODENAMES, OPERATORS, VIEWER_CODENAMES, VIEWERS

PASSWORD = "a-long-test-password-9"


def user_in(role: str | None, username: str) -> User:
    """A user in the viewers or operators group (created here: flushes drop them)."""
    user = User.objects.create_user(username, password=PASSWORD)
    if role is not None:
        codenames = OPERATOR_CODENAMES if role == OPERATORS else VIEWER_CODENAMES
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(content_type__app_label="batches",
                                                        codename__in=codenames))
        user.groups.add(group)
    return user


def viewer(username: str = "vera") -> User:
    return user_in(VIEWERS, username)


def operator(username: str = "otto") -> User:
    return user_in(OPERATORS, username)


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def make_batch(n: int = 5, name: str = "b", **fields: Any) -> Batch:
    batch = Batch.objects.create(name=name, source_name=f"{name}.csv", source_sha256="0" * 64,
                                 site_preset="demo", po_count=n)
    PurchaseOrder.objects.bulk_create(
        PurchaseOrder(batch=batch, row_number=i + 2, po_number=f"PO{500000 + i}",
                      supplier="Acme", url=f"http://127.0.0.1:1/order_headers/{500000 + i}",
                      amount=Decimal("10.00"), **fields)
        for i in range(n))
    return batch
