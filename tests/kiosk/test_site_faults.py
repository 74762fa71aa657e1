"""The fault drill (kiosk/bench/site.py): 3 kiosk processes and the server, with
enrollments, erasures, door events and trials; each of 20 rounds crashes the server
mid-sync and SIGKILLs a kiosk, then restarts both."""

from __future__ import annotations

import pytest

from tests.helpers import skip_or_fail


@pytest.mark.postgres
@pytest.mark.slow
def test_twenty_faults_lose_nothing_double_nothing_and_name_nobody_erased() -> None:
    from kiosk.bench.pgcluster import PostgresMissing
    from kiosk.bench.site import run_faults

    try:  # the drill runs its own cluster: it crashes and restarts it
        result = run_faults(rounds=20, kiosks=3)
    except PostgresMissing as error:
        skip_or_fail(str(error))
    assert result["server_crashes"] == 20 and result["kiosk_kills"] == 20
    assert result["people_erased"] == 20
    assert result["events_logged"] > 100 and result["trials_finished"] > 20  # it ran
    assert result["events_lost"] == 0
    assert result["events_doubled"] == 0
    assert result["events_unknown"] == 0
    assert result["events_of_erased_kept"] == 0  # removed with their person
    assert result["named_after_erasure"] == 0
    assert result["trials_lost"] == 0
    assert result["trials_doubled"] == 0
    assert result["converged_s"] is not None  # every replica ended equal to the registry
