"""The people store's records as JSON-ready rows and one-line texts (`kiosk people
list|audit`), and the consent of people imported from a folder."""

from __future__ import annotations

from datetime import datetime, timedelta

from enroll.store import AuditEntry, Consent, Person, utc_now
from models.errors import UserError
from models.words import counted


def purge_after(person: Person, retention_days: int | None) -> datetime:
    """When the person's biometric data is purged: their consent plus the retention
    period (no period: the consent's own date)."""
    return person.consent.at + timedelta(days=retention_days or 0)


def person_row(person: Person, retention_days: int | None) -> dict[str, object]:
    return {
        "name": person.name,
        "id": person.uid,  # the opaque id the audit log and `kiosk doctor` name people by
        "external_id": person.external_id,
        "photos": person.photo_count,
        "enrolled": person.created_at.isoformat(timespec="seconds"),
        "consent_version": person.consent.version,
        "consent_at": person.consent.at.isoformat(timespec="seconds"),
        "purge_after": purge_after(person, retention_days).date().isoformat(),
    }


def person_line(row: dict[str, object]) -> str:
    """A :func:`person_row` as one line of text."""
    external = f"  id {row['external_id']}" if row["external_id"] else ""
    photos = row["photos"]
    assert isinstance(photos, int)
    return (
        f"{row['name']:<30} {counted(photos, 'photo'):>10}"
        f"  enrolled {str(row['enrolled'])[:10]}"
        f"  purge after {row['purge_after']}{external}"
    )


def audit_row(entry: AuditEntry) -> dict[str, str]:
    return {
        "at": entry.at.isoformat(timespec="seconds"),
        "action": entry.action,
        "subject": entry.subject,
        "reason": entry.reason,
    }


def audit_line(row: dict[str, str]) -> str:
    """An :func:`audit_row` as one line of text."""
    return f"{row['at']}  {row['action']:<7} {row['subject']}  {row['reason']}"


def import_consent(consent_version: str, obtained: bool) -> Consent:
    """The consent recorded for people imported from a folder: today, marked as an
    import. Importing biometric data needs the operator to confirm it was ``obtained``."""
    if not obtained:
        raise UserError(
            "importing biometric data needs each person's consent: add --consent-obtained "
            "to confirm it was collected"
        )
    return Consent(f"{consent_version} (import)", utc_now())
