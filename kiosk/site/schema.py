"""The registry's schema: versioned migrations, the roles, and their row-level security.

``kiosk site migrate`` applies :data:`MIGRATIONS` in order, each in its own transaction
under an advisory lock, so two operators migrating at once cannot interleave. Version
``i + 1`` is reached by applying entry ``i`` (SQL, or a function of the connection for
what SQL cannot do alone); the applied version is in ``schema_version``.

Three group roles (``--create-roles``), each a member of the one before:

- ``kiosk_door``: reads people, crops, embeddings, deletions and bundles; writes its own
  door events, trials and status row. Row-level security keys those rows on
  ``kiosk_id = current_user``: a door kiosk cannot read, or write as, another kiosk.
- ``kiosk_enroll``: also adds and renames people (the wizard of a reception desk).
- ``kiosk_operator``: also erases people (their rows, their door events, their names in
  every kiosk's trials, their labels' and sources' too), publishes CLIP bundles and
  reads every kiosk's rows (the privacy officer, the training machine, ``kiosk site
  status``).

Each kiosk logs in as its own role (``kiosk site add-kiosk``), a member of one of them;
its role name is its kiosk id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from models.errors import UserError
from models.names import erased_label, name_digest, name_key, relabel_mentions

DOOR, ENROLL, OPERATOR = "kiosk_door", "kiosk_enroll", "kiosk_operator"
ROLES = {"door": DOOR, "enroll": ENROLL, "operator": OPERATOR}
MIGRATE_LOCK = 7_260_001  # advisory lock keys, arbitrary but fixed
CHANGE_LOCK = 7_260_002

_OWN_ROWS = "(kiosk_id = current_user OR kiosk_is_operator())"

# A trial pushed before schema 2, which says nothing of who its names were.
_BEFORE_TRIAL_PEOPLE = "NOT EXISTS (SELECT 1 FROM trial_people p WHERE p.trial_key = t.trial_key)"
# Where such a trial names enrolled people (the columns as they were at schema 2; a
# migration never follows later changes): (table, column, which of its rows).
_ENROLLED_NAMES = (
    ("trials", "participant", "t.enrolled = 1"),  # not a stranger's or an attack's name
    ("trials", "answer", "true"),
    ("trial_frames", "best", "true"),
    ("trial_frames", "accepted", "true"),
)


def _anonymise_erased_before_schema_2(conn: Any) -> None:
    """3: the names that erasures made before schema 2 left in the trials.

    Before schema 2 an erasure removed the person but not their name from the trials,
    and its tombstone keeps only their id: the name itself is gone from the registry,
    so it cannot be looked for. What is known is where a trial names an *enrolled*
    person (the participant of an enrolled trial, the answer, every frame's best and
    accepted name) and who is enrolled now: such a name that matches no current person
    (by :func:`~models.names.name_key`, as erasures match names) was the name of someone
    who is no longer on the site, erased (purged or deleted), or renamed since. In the
    trials pushed before schema 2 (those without ``trial_people`` rows) every such name
    becomes a fresh :func:`~models.names.erased_label`, one per name key, so every
    trial keeps its outcome and the names that were equal stay equal: the metrics are
    as they were. A renamed person's old name is anonymised too, and that loses no
    metric either (their trials stay theirs, under the label). A tombstone's label, in
    a trial anonymised already, is left as it is. Their mentions in those trials' free
    text (a session's label, a clip's path, an attack's name) become the label too
    (:func:`~models.names.replace_mentions`).
    """
    current = {name_key(str(name)) for (name,) in conn.execute("SELECT name FROM people")}
    current |= {
        name_key(str(label))
        for (label,) in conn.execute("SELECT label FROM tombstones WHERE label IS NOT NULL")
    }
    labels: dict[str, str] = {}  # name key -> its label
    names: dict[str, str] = {}  # each name as written -> its label
    for table, column, rows in _ENROLLED_NAMES:
        for (name,) in conn.execute(
            f"SELECT DISTINCT t.{column} FROM {table} t"
            f" WHERE t.{column} IS NOT NULL AND {rows} AND {_BEFORE_TRIAL_PEOPLE}"
        ):
            key = name_key(str(name))
            if key not in current:
                names[str(name)] = labels.setdefault(key, erased_label())
    if not names:
        return
    for table, column, rows in _ENROLLED_NAMES:
        conn.execute(
            f"UPDATE {table} t SET {column} = m.label"
            " FROM unnest(%s::text[], %s::text[]) AS m(name, label)"
            f" WHERE t.{column} = m.name AND {rows} AND {_BEFORE_TRIAL_PEOPLE}",
            (list(names), list(names.values())),
        )
    # Their mentions in those trials' free text: the sessions' labels, the clips' paths,
    # the names of attacks and strangers.
    digests = {name_digest(key): label for key, label in labels.items()}
    before = _BEFORE_TRIAL_PEOPLE
    texts = (
        (
            "trial_sessions",
            "session_key",
            "label",
            f"SELECT session_key, label FROM trial_sessions s WHERE EXISTS (SELECT 1 FROM"
            f" trials t WHERE t.session_key = s.session_key AND {before})",
        ),
        ("trials", "trial_key", "source", f"SELECT trial_key, source FROM trials t WHERE {before}"),
        (  # an attack's or a stranger's name ("photo of Ken")
            "trials",
            "trial_key",
            "participant",
            f"SELECT trial_key, participant FROM trials t WHERE enrolled <> 1 AND {before}",
        ),
    )
    for table, key, column, select in texts:
        for row_key, text in conn.execute(select).fetchall():
            if (changed := relabel_mentions(str(text), digests)) != text:
                conn.execute(
                    f"UPDATE {table} SET {column} = %s WHERE {key} = %s", (changed, row_key)
                )


def _schema_3(conn: Any) -> None:
    conn.execute(
        "CREATE POLICY erasure ON trial_sessions FOR UPDATE USING (kiosk_is_operator())"
        " WITH CHECK (kiosk_is_operator())"
    )
    _anonymise_erased_before_schema_2(conn)


MIGRATIONS: tuple[str | Callable[[Any], None], ...] = (
    # 1: people, the change feed, bundles, events, trials, kiosks
    f"""
    CREATE TABLE site_meta (key text PRIMARY KEY, value text NOT NULL);
    INSERT INTO site_meta VALUES ('site_id', md5(random()::text || clock_timestamp()::text));
    CREATE SEQUENCE change_seq;
    CREATE TABLE changes (
        seq bigint PRIMARY KEY,
        kind text NOT NULL
            CHECK (kind IN ('person', 'rename', 'delete', 'bundle', 'embeddings')),
        person_uid text,
        bundle_version bigint,
        at timestamptz NOT NULL DEFAULT now(),
        by_role text NOT NULL DEFAULT current_user
    );
    CREATE TABLE people (
        uid text PRIMARY KEY CHECK (uid ~ '^[0-9a-f]{{32}}$'),
        name text NOT NULL,
        name_key text NOT NULL UNIQUE,
        external_id text,
        created_at timestamptz NOT NULL,
        consent_version text NOT NULL,
        consent_at timestamptz NOT NULL,
        retain_until timestamptz NOT NULL,
        enrolled_by text NOT NULL DEFAULT current_user,
        seq bigint NOT NULL
    );
    CREATE TABLE photos (
        person_uid text NOT NULL REFERENCES people(uid) ON DELETE CASCADE,
        idx integer NOT NULL,
        pose text NOT NULL DEFAULT '',
        crop bytea NOT NULL,
        sha256 text NOT NULL,
        PRIMARY KEY (person_uid, idx)
    );
    CREATE TABLE embeddings (
        person_uid text NOT NULL,
        idx integer NOT NULL,
        model text NOT NULL,
        vector bytea NOT NULL,
        PRIMARY KEY (person_uid, idx, model),
        FOREIGN KEY (person_uid, idx) REFERENCES photos ON DELETE CASCADE
    );
    CREATE TABLE tombstones (
        person_uid text PRIMARY KEY,
        seq bigint NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        reason text NOT NULL,
        deleted_by text NOT NULL DEFAULT current_user
    );
    CREATE INDEX tombstones_seq ON tombstones (seq);
    CREATE TABLE bundles (
        version bigint PRIMARY KEY,
        sha256 text NOT NULL,
        size bigint NOT NULL,
        data bytea NOT NULL,
        people jsonb NOT NULL,
        meta jsonb NOT NULL DEFAULT '{{}}',
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by text NOT NULL DEFAULT current_user,
        seq bigint NOT NULL
    );
    CREATE FUNCTION kiosk_is_operator() RETURNS boolean LANGUAGE sql STABLE AS $$
        SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = '{OPERATOR}'
                       AND pg_has_role(current_user, r.oid, 'MEMBER'))
    $$;
    CREATE TABLE events (
        event_key uuid PRIMARY KEY,
        kiosk_id text NOT NULL DEFAULT current_user,
        person_uid text,
        confidence real NOT NULL,
        at timestamptz NOT NULL,
        track_id integer NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX events_person ON events (person_uid);
    CREATE TABLE trial_sessions (
        session_key uuid PRIMARY KEY,
        kiosk_id text NOT NULL DEFAULT current_user,
        label text NOT NULL,
        created_at double precision NOT NULL,
        duration double precision NOT NULL,
        threshold double precision NOT NULL,
        min_share double precision NOT NULL,
        recognizer text NOT NULL
    );
    CREATE TABLE trials (
        trial_key uuid PRIMARY KEY,
        session_key uuid NOT NULL REFERENCES trial_sessions ON DELETE CASCADE,
        kiosk_id text NOT NULL DEFAULT current_user,
        participant text NOT NULL,
        enrolled integer NOT NULL,
        started_at double precision NOT NULL,
        duration double precision NOT NULL,
        answer text,
        outcome text NOT NULL,
        misidentified boolean NOT NULL,
        source text NOT NULL DEFAULT '',
        received_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE trial_frames (
        trial_key uuid NOT NULL REFERENCES trials ON DELETE CASCADE,
        idx integer NOT NULL,
        kiosk_id text NOT NULL DEFAULT current_user,
        t double precision NOT NULL,
        face boolean NOT NULL,
        best text,
        confidence double precision,
        threshold double precision NOT NULL,
        accepted text,
        live boolean,
        PRIMARY KEY (trial_key, idx)
    );
    CREATE TABLE kiosks (
        kiosk_id text PRIMARY KEY DEFAULT current_user,
        last_sync timestamptz,
        cursor bigint NOT NULL DEFAULT 0,
        bundle_version bigint,
        queued integer NOT NULL DEFAULT 0,
        rejected integer NOT NULL DEFAULT 0,
        health text NOT NULL DEFAULT '',
        program text NOT NULL DEFAULT '',
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE events ENABLE ROW LEVEL SECURITY;
    ALTER TABLE trial_sessions ENABLE ROW LEVEL SECURITY;
    ALTER TABLE trials ENABLE ROW LEVEL SECURITY;
    ALTER TABLE trial_frames ENABLE ROW LEVEL SECURITY;
    ALTER TABLE kiosks ENABLE ROW LEVEL SECURITY;
    CREATE POLICY own_rows ON events USING {_OWN_ROWS} WITH CHECK (kiosk_id = current_user);
    CREATE POLICY own_rows ON trial_sessions USING {_OWN_ROWS}
        WITH CHECK (kiosk_id = current_user);
    CREATE POLICY own_rows ON trials USING {_OWN_ROWS} WITH CHECK (kiosk_id = current_user);
    CREATE POLICY own_rows ON trial_frames USING {_OWN_ROWS}
        WITH CHECK (kiosk_id = current_user);
    CREATE POLICY own_rows ON kiosks USING {_OWN_ROWS} WITH CHECK (kiosk_id = current_user);
    """,
    # 2: erasure reaches the trials and the door events. A trial's names are matched to
    # the people they were when it was pushed (trial_people), so an erasure finds them
    # after a rename; the tombstone keeps the opaque label the erased person's trials
    # were given, for trials that arrive later; an operator may rewrite any kiosk's
    # trials (the names only), delete its door events, and clear an erased person's id
    # from the change feed.
    f"""
    ALTER TABLE tombstones ADD COLUMN label text;
    CREATE TABLE trial_people (
        trial_key uuid NOT NULL REFERENCES trials ON DELETE CASCADE,
        name text NOT NULL,
        person_uid text NOT NULL,
        kiosk_id text NOT NULL DEFAULT current_user,
        PRIMARY KEY (trial_key, name)
    );
    CREATE INDEX trial_people_person ON trial_people (person_uid);
    ALTER TABLE trial_people ENABLE ROW LEVEL SECURITY;
    CREATE POLICY own_rows ON trial_people USING {_OWN_ROWS}
        WITH CHECK (kiosk_id = current_user);
    CREATE POLICY erasure ON trials FOR UPDATE USING (kiosk_is_operator())
        WITH CHECK (kiosk_is_operator());
    CREATE POLICY erasure ON trial_frames FOR UPDATE USING (kiosk_is_operator())
        WITH CHECK (kiosk_is_operator());
    """,
    # 3: erasure reaches the trials' free text too (an operator may rewrite any kiosk's
    # session labels and trial sources), and the names erasures made before schema 2
    # left in the trials go.
    _schema_3,
)
SCHEMA_VERSION = len(MIGRATIONS)

# The privileges each version added (entry i with migration i); every migrate grants
# them all again to the roles that exist, so an upgraded registry has what this program
# needs.
GRANTS: tuple[str, ...] = (
    f"""
GRANT USAGE ON SCHEMA public TO {DOOR};
GRANT SELECT ON schema_version, site_meta, changes, people, photos, embeddings, tombstones,
    bundles TO {DOOR};
GRANT SELECT, INSERT ON events, trial_sessions, trials, trial_frames TO {DOOR};
GRANT SELECT, INSERT, UPDATE ON kiosks TO {DOOR};
GRANT EXECUTE ON FUNCTION kiosk_is_operator() TO {DOOR};
GRANT {DOOR} TO {ENROLL};
GRANT INSERT ON people, photos, embeddings, changes TO {ENROLL};
GRANT UPDATE (name, name_key, seq) ON people TO {ENROLL};
GRANT USAGE ON SEQUENCE change_seq TO {ENROLL};
GRANT {ENROLL} TO {OPERATOR};
GRANT DELETE ON people, photos, embeddings, bundles TO {OPERATOR};
GRANT INSERT ON tombstones, bundles TO {OPERATOR};
""",
    f"""
GRANT SELECT, INSERT ON trial_people TO {DOOR};
GRANT UPDATE (participant, answer) ON trials TO {OPERATOR};
GRANT UPDATE (best, accepted) ON trial_frames TO {OPERATOR};
GRANT DELETE ON events, trial_people TO {OPERATOR};
GRANT UPDATE (person_uid) ON changes TO {OPERATOR};
""",
    f"""
GRANT UPDATE (label) ON trial_sessions TO {OPERATOR};
GRANT UPDATE (source) ON trials TO {OPERATOR};
""",
)

_ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def schema_version(conn: Any) -> int:
    """The registry's applied schema version (0: never migrated)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: Any, *, create_roles: bool = False) -> tuple[int, int]:
    """Bring the registry to :data:`SCHEMA_VERSION`; (version before, version after).

    ``create_roles`` also creates the three group roles (if missing) and grants them
    their privileges; grants are renewed on every migrate for the roles that exist.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        before = schema_version(conn)
        if before > SCHEMA_VERSION:
            raise UserError(
                f"the site registry has schema version {before}, newer than this program's "
                f"{SCHEMA_VERSION}: update the program on this machine"
            )
    for target in range(before, SCHEMA_VERSION):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            if schema_version(conn) != target:
                continue  # someone else applied it meanwhile
            step = MIGRATIONS[target]
            if isinstance(step, str):
                conn.execute(step)
            else:
                step(conn)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (%s)", (target + 1,))
    with conn.transaction():
        if create_roles:
            for role in (DOOR, ENROLL, OPERATOR):
                if not _role_exists(conn, role):
                    conn.execute(f"CREATE ROLE {role} NOLOGIN")
        if all(_role_exists(conn, role) for role in (DOOR, ENROLL, OPERATOR)):
            conn.execute("".join(GRANTS))
    return before, SCHEMA_VERSION


# What an erasure deletes or rewrites rows of: their old versions stay in the tables'
# files until these are rewritten (:func:`vacuum`).
ERASED_FROM = (
    "people",
    "photos",
    "embeddings",
    "changes",
    "events",
    "bundles",
    "trial_sessions",
    "trials",
    "trial_frames",
    "trial_people",
)


def vacuum(conn: Any) -> list[str]:
    """Rewrite the tables erasures change (``VACUUM FULL``, as their owner): PostgreSQL
    keeps a deleted or updated row's old version in a table's files until then, so an
    erased person's crops and name are on the server's disk until this runs. The tables
    are locked while each is rewritten (seconds for a site's registry). The tables
    rewritten; a role that does not own them is refused (PostgreSQL would skip them)."""
    owned = conn.execute(
        "SELECT coalesce(bool_and(pg_has_role(current_user, tableowner, 'MEMBER')), false)"
        " FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
        (list(ERASED_FROM),),
    ).fetchone()[0]
    conn.rollback()
    if not owned:
        raise UserError(
            "only the registry's owner may rewrite its tables: run `kiosk site vacuum "
            "--user OWNER` (the role that ran `kiosk site migrate`)"
        )
    conn.autocommit = True  # VACUUM runs outside a transaction
    for table in ERASED_FROM:
        conn.execute(f"VACUUM (FULL) {table}")
    return list(ERASED_FROM)


def require_current(conn: Any) -> None:
    """Refuse a registry that was never migrated or is of another version."""
    version = schema_version(conn)
    if version == SCHEMA_VERSION:
        return
    if version < SCHEMA_VERSION:
        raise UserError(
            f"the site registry has schema version {version}, this program needs "
            f"{SCHEMA_VERSION}: run `kiosk site migrate` as the registry's owner"
        )
    raise UserError(
        f"the site registry has schema version {version}, newer than this program's "
        f"{SCHEMA_VERSION}: update the program on this machine"
    )


def _role_exists(conn: Any, role: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone())


def add_kiosk(conn: Any, name: str, kind: str, password: str | None) -> None:
    """Create a kiosk's login role, a member of the group role ``kind`` names.

    The password reaches the server only as a SCRAM verifier made here, so it never
    appears in a statement the server could log.
    """
    from psycopg import sql

    if not _ROLE_NAME.fullmatch(name):
        raise UserError(
            f"kiosk id {name!r}: use lowercase letters, digits and '_' (a letter first)"
        )
    if kind not in ROLES:
        raise UserError(f"role {kind!r}: choose one of {', '.join(ROLES)}")
    group = ROLES[kind]
    with conn.transaction():
        if not _role_exists(conn, group):
            raise UserError(f"role {group} does not exist: run `kiosk site migrate --create-roles`")
        if _role_exists(conn, name):
            raise UserError(f"a database role {name!r} already exists; choose another kiosk id")
        statement = sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
            sql.Identifier(name), sql.Identifier(group)
        )
        conn.execute(statement)
        if password:
            verifier = conn.pgconn.encrypt_password(
                password.encode("utf-8"), name.encode("utf-8"), b"scram-sha-256"
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(verifier.decode("ascii"))
                )
            )
