"""The scale-out services answer and are usable: PostgreSQL through Django, Redis through
the Channels layer. Skipped with a reason where unset; mandatory in CI (.ci/run)."""

from __future__ import annotations

import asyncio
import uuid

import dj_database_url
import psycopg
import pytest
from channels_redis.core import RedisChannelLayer

from tests.conftest import service_url


def test_it_round_trips_a_row_through_postgresql() -> None:
    url = service_url("POOL_TEST_DATABASE_URL")
    config = dj_database_url.parse(url)
    table = f"poolsite_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.execute(f"CREATE TEMP TABLE {table} (id int primary key, amount numeric(12,2))")
        conn.execute(f"INSERT INTO {table} VALUES (1, 1234.56)")
        row = conn.execute(f"SELECT amount FROM {table} WHERE id = 1").fetchone()
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert row is not None and str(row[0]) == "1234.56"


@pytest.mark.asyncio
async def test_it_carries_a_group_message_through_redis() -> None:
    url = service_url("POOL_TEST_REDIS_URL")
    layer = RedisChannelLayer(hosts=[url], prefix=f"test-{uuid.uuid4().hex[:6]}")
    channel = await layer.new_channel()
    await layer.group_add("pool", channel)
    await layer.group_send("pool", {"type": "pool.event", "text": "hello"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    await layer.group_discard("pool", channel)
    await layer.flush()
    assert message == {"type": "pool.event", "text": "hello"}
