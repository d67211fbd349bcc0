"""Helpers shared by the database tests: signing a user up, and acting as an app role."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row


def sign_up(conn: psycopg.Connection, email: str, display_name: str | None = None) -> tuple[str, str]:
    """Insert an auth user (the signup trigger creates profile, household and membership);
    return (user id, household id) as text. Works whatever the connection's row factory."""
    meta = json.dumps({"full_name": display_name}) if display_name else None
    with conn.cursor(row_factory=tuple_row) as cur:
        user_id = cur.execute("insert into auth.users (email, raw_user_meta_data) values (%s, %s) returning id::text",
                              (email, meta)).fetchone()[0]
        household_id = cur.execute("select household_id::text from household_members where user_id = %s",
                                   (user_id,)).fetchone()[0]
    return user_id, household_id


@contextmanager
def acting_as(conn: psycopg.Connection, role: str, user_id: str | None = None) -> Iterator[psycopg.Connection]:
    """A rolled-back transaction run as `role`, with `user_id` as the JWT subject (as PostgREST)."""
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        if user_id is not None:
            conn.execute("select set_config('request.jwt.claims', %s, true)",
                         (json.dumps({"sub": user_id, "role": role}),))
        yield conn
