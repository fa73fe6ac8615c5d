"""Who may read what, applied on every `db migrate` (so a role created later gets its grants).

The roles come from schemas/audiences.py; deploy/migrations/0005_disclosure.sql makes the
schemas, views and row-level security policies. Readers get grants on views only, never on a
table. This module (re)creates what depends on the
role names, grants each audience its layer, and seeds the Cell Key Method's perturbation table
from processors/disclosure.py (its one source).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from processors.disclosure import PTABLE
from schemas.audiences import (
    EXACT_GROUP,
    EXACT_SCHEMA,
    NATIONAL_ROLE,
    PUBLIC_ROLE,
    PUBLIC_SCHEMA,
    REGION_ROLE_PREFIX,
)
from schemas.codes import regions

_READABLE_REGIONS = """
CREATE OR REPLACE FUNCTION exact.readable_regions() RETURNS text[]
LANGUAGE sql STABLE AS $fn$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM pg_roles
                     WHERE rolname = {national} AND pg_has_role(current_user, oid, 'MEMBER'))
        THEN {everything}::text[]
        ELSE ARRAY(SELECT substr(rolname, {skip}) FROM pg_roles
                   WHERE starts_with(rolname, {prefix})
                     AND pg_has_role(current_user, oid, 'MEMBER'))
    END
$fn$
"""


def _exists(conn: psycopg.Connection, relation: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return bool(row and row[0])


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def apply(conn: psycopg.Connection) -> None:
    """Seed the perturbation table, define the role-dependent function, grant the layers."""
    if not _exists(conn, "ckm_ptable"):
        return  # migrations before 0005
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM ckm_ptable")
        rows = []
        for row in PTABLE:
            low = 0
            for e, p, high in zip(row.perturbations, row.probabilities, row.bounds, strict=True):
                rows.append((row.count, low, high, e, p))
                low = high
        cur.executemany(
            "INSERT INTO ckm_ptable (count_row, key_low, key_high, perturbation, probability)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
        cur.execute(
            sql.SQL(_READABLE_REGIONS).format(
                national=sql.Literal(NATIONAL_ROLE),
                prefix=sql.Literal(REGION_ROLE_PREFIX),
                skip=sql.Literal(len(REGION_ROLE_PREFIX) + 1),
                everything=sql.Literal([*regions(), "SE"]),
            )
        )
        published, exact = sql.Identifier(PUBLIC_SCHEMA), sql.Identifier(EXACT_SCHEMA)
        readers = [r for r in (PUBLIC_ROLE, EXACT_GROUP) if _role_exists(conn, r)]
        for role in readers:
            r = sql.Identifier(role)
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(published, r))
            cur.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(published, r)
            )
            cur.execute(
                sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(published, r)
            )
        if PUBLIC_ROLE in readers:
            r = sql.Identifier(PUBLIC_ROLE)
            # The public reader reads the public layer only: nothing in public or exact.
            cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(r))
            cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(exact, r))
            cur.execute(sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}").format(exact, r))
        if EXACT_GROUP in readers:
            r = sql.Identifier(EXACT_GROUP)
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(exact, r))
            cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(exact, r))
            cur.execute(
                sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(exact, r)
            )
            # No table grant, ever: the exact views filter by region, and a hypertable's chunks
            # would inherit a table grant without its row-level security (0005_disclosure.sql).
            cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(r))


def create_roles(conn: psycopg.Connection, passwords: dict[str, str]) -> list[str]:
    """Create (or set the password of) each reader role, make the exact ones members of the
    exact group, then grant (``apply``). Needs CREATEROLE; a deployment's own tooling may do
    this instead. Returns the roles created."""
    from schemas.audiences import exact_roles

    created = []
    with conn.transaction():
        if not _role_exists(conn, EXACT_GROUP):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(EXACT_GROUP)))
            created.append(EXACT_GROUP)
        for role, password in passwords.items():
            verb = "ALTER" if _role_exists(conn, role) else "CREATE"
            if verb == "CREATE":
                created.append(role)
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
            if role in exact_roles():
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(
                        sql.Identifier(EXACT_GROUP), sql.Identifier(role)
                    )
                )
    apply(conn)
    return created
