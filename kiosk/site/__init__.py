"""A site of many doors: one PostgreSQL registry, and kiosks that replicate it.

Only used when the config has a ``[site]`` section; a kiosk without one never imports
psycopg. The parts, from the bottom up:

- :mod:`kiosk.site.connect`: credentials (environment or keyring, never the config
  file, never printed) and the connection, with libpq's TLS settings passed through.
- :mod:`kiosk.site.schema`: the registry's versioned migrations, its roles and their
  row-level security (`kiosk site migrate`).
- :mod:`kiosk.site.registry`: every statement the kiosks run against the registry.
- :mod:`kiosk.site.state`: the kiosk's own SQLite file beside its people store: the
  sync cursor, the last successful sync, and the durable outbox of pushes.
- :mod:`kiosk.site.replica`: the local people store as a replica (enrollments and
  deletions made here are queued for the registry) and the naming policy that refuses
  to name from a stale replica or a person erased elsewhere.
- :mod:`kiosk.site.sync`: the sync worker: pull by cursor (deletions first), push the
  outbox with idempotent keys, woken by LISTEN/NOTIFY, polling as the fallback.
- :mod:`kiosk.site.events`: door events pushed by person id from the kiosk's own log.
"""
