"""Who may read and write what, applied on every `db migrate` (so a role created later gets its
grants).

The roles come from schemas/audiences.py (readers, the audit role) and streams/settings.py (the
writer, PALLIWATCH_DB_WRITER_ROLE); deploy/migrations/0005_disclosure.sql makes the schemas,
views and row-level security policies. Migrations run as the schema owner. The writer (the
worker) gets rows, never DDL: SELECT on the tables, INSERT and UPDATE on the tables the sink
merges into, and a row-level security policy of its own (policies exempt only the owner).
Readers get grants on views only, never on a table. The audit role marks every view for
pgaudit's object audit log (who read what). This module (re)creates what depends on the role
names, grants each role its part, and seeds the Cell Key Method's perturbation table from
processors/disclosure.py (its one source).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from processors.disclosure import PTABLE
from schemas.audiences import (
    AUDIT_ROLE,
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


# The writer's own policy on every table with row-level security (the policies of 0005 are
# FOR SELECT for readers; without one for the writer its inserts would be refused).
WRITER_POLICY = "palliwatch_writer_rows"


def writer_tables() -> list[str]:
    """The tables the worker merges rows into: one per UpsertSpec in processors/sink.py (a new
    spec there is a new table the writer may write, with no second list to keep)."""
    from processors import sink

    return sorted({v.table for v in vars(sink).values() if isinstance(v, sink.UpsertSpec)})


def apply(conn: psycopg.Connection, writer: str | None = None) -> list[str]:
    """Seed the perturbation table, define the role-dependent function, grant the layers, the
    writer's rows (``writer``: the worker's role) and the audit marks. Returns notices: what
    this database lacks for least privilege or access logging, each naming the fix."""
    if not _exists(conn, "ckm_ptable"):
        return []  # migrations before 0005
    notices: list[str] = []
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
        if writer is not None:
            notices += _grant_writer(conn, writer)
        notices += _mark_audited(conn)
    return notices


def _current_user(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return str(row[0]) if row else ""


def _grant_writer(conn: psycopg.Connection, writer: str) -> list[str]:
    """The worker's rights, reset on every run: rows of every table, no DDL (it owns nothing
    and has no CREATE anywhere), nothing in the reader schemas."""
    if writer == _current_user(conn):
        # A single-role deployment (no PALLIWATCH_OWNER_DATABASE_URL): `db migrate` says so.
        return []
    if not _role_exists(conn, writer):
        return [
            f"the writer role {writer} does not exist: create it (CREATE ROLE {writer} LOGIN "
            "PASSWORD '...') and run `palliwatch db migrate` again, or set "
            "PALLIWATCH_DB_WRITER_ROLE to the worker's role"
        ]
    w = sql.Identifier(writer)
    # public's CREATE: PostgreSQL 15 grants it to nobody, older servers to PUBLIC; the schema's
    # owner (the database owner since 15) takes it back, so the writer cannot create tables.
    owns_public = conn.execute(
        "SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace "
        "WHERE nspname = 'public'"
    ).fetchone()
    if owns_public and owns_public[0]:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(w))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(w))
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(w))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(w))
    tables = [t for t in writer_tables() if _exists(conn, t)]
    conn.execute(
        sql.SQL("GRANT INSERT, UPDATE ON {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in tables), w
        )
    )
    conn.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(w))
    conn.execute(sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {}").format(w))
    # The sink stages each batch in a temporary table (processors/sink.py).
    owns_db = conn.execute(
        "SELECT pg_has_role(current_user, datdba, 'USAGE') FROM pg_database "
        "WHERE datname = current_database()"
    ).fetchone()
    if owns_db and owns_db[0]:
        db = sql.Identifier(_current_database(conn))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, w))
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(db, w))
    # Row-level security exempts the table owner only: the writer needs a policy of its own.
    secured = [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relrowsecurity AND c.relkind IN ('r', 'p')"
        )
    ]
    for table in secured:
        current = conn.execute(
            "SELECT roles::text[] FROM pg_policies WHERE schemaname = 'public' "
            "AND tablename = %s AND policyname = %s",
            (table, WRITER_POLICY),
        ).fetchone()
        if current is not None and list(current[0]) == [writer]:
            continue  # unchanged: no lock on a table the worker is writing
        t, p = sql.Identifier(table), sql.Identifier(WRITER_POLICY)
        conn.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(p, t))
        conn.execute(
            sql.SQL("CREATE POLICY {} ON {} FOR ALL TO {} USING (true) WITH CHECK (true)").format(
                p, t, w
            )
        )
    return _writer_attributes(conn, writer)


def _current_database(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    return str(row[0]) if row else ""


def _writer_attributes(conn: psycopg.Connection, writer: str) -> list[str]:
    """What the writer holds beyond its grants, with the statement that takes it away."""
    notices = []
    row = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
        "WHERE rolname = %s",
        (writer,),
    ).fetchone()
    if row is not None:
        names = ("SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS")
        extra = [name for name, held in zip(names, row, strict=True) if held]
        if extra:
            taken = " ".join(f"NO{e}" for e in extra)
            notices.append(
                f"the writer role {writer} has {', '.join(extra)}: ALTER ROLE {writer} {taken}"
            )
    owned = conn.execute(
        "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles "
        "WHERE rolname = %s) AND relnamespace IN ('public'::regnamespace, "
        "to_regnamespace('published'), to_regnamespace('exact'))",
        (writer,),
    ).fetchone()
    if owned and owned[0]:
        notices.append(
            f"the writer role {writer} still owns {owned[0]} tables or views (set up by an "
            f"earlier version): as a superuser, in this database, REASSIGN OWNED BY {writer} "
            f"TO {_current_user(conn)}; then run `palliwatch db migrate` again"
        )
    return notices


def _mark_audited(conn: psycopg.Connection) -> list[str]:
    """pgaudit's object audit: every SELECT on a relation the audit role may read is logged
    with the reading role. The audit role is granted every view of both reader layers and
    nothing else, so each read of a published figure is logged and the worker's writes are not.
    The server must name the role (pgaudit.role); `services up` does so locally."""
    if not _role_exists(conn, AUDIT_ROLE):
        return [
            f"the audit role {AUDIT_ROLE} does not exist, so reads are not audited: run "
            f"`palliwatch db roles` (or CREATE ROLE {AUDIT_ROLE} NOLOGIN) and migrate again"
        ]
    a = sql.Identifier(AUDIT_ROLE)
    for schema in (PUBLIC_SCHEMA, EXACT_SCHEMA):
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                sql.Identifier(schema), a
            )
        )
    row = conn.execute("SELECT current_setting('pgaudit.role', true)").fetchone()
    setting = row[0] if row else None
    if setting is None:
        return [
            "pgaudit is not loaded, so only connections are logged (log_connections): install "
            "it (Debian: postgresql-NN-pgaudit), add it to shared_preload_libraries and set "
            f"pgaudit.role = '{AUDIT_ROLE}'"
        ]
    if setting != AUDIT_ROLE:
        return [
            f"pgaudit is loaded but pgaudit.role is {setting!r}: set pgaudit.role = "
            f"'{AUDIT_ROLE}' in postgresql.conf so that reads of the published views are logged"
        ]
    return []


def create_roles(
    conn: psycopg.Connection, passwords: dict[str, str], writer: str | None = None
) -> tuple[list[str], list[str]]:
    """Create (or set the password of) each reader role and the audit role, make the exact
    ones members of the exact group, then grant (``apply``). Needs CREATEROLE; a deployment's
    own tooling may do this instead. Returns the roles created and ``apply``'s notices."""
    from schemas.audiences import exact_roles

    created = []
    with conn.transaction():
        for group in (EXACT_GROUP, AUDIT_ROLE):
            if not _role_exists(conn, group):
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
                created.append(group)
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
    return created, apply(conn, writer)
