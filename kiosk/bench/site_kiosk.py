"""One simulated door kiosk of a site, as a process: ``python -m kiosk.bench.site_kiosk
SPEC.json`` (kiosk/bench/site.py starts, kills and restarts them).

Everything a kiosk does for the site is the product's own code: the replica store, the
sync worker thread (LISTEN/NOTIFY, poll, outbox, event log tail), the naming gate, the
event log and the trials store. Only the camera and the face models are left out: a
"recognition" names a random person of the replica, through the gate, as the live
pipeline's recognizer would (kiosk/live/holder.py's GatedRecognizer). Like the live
recognizer, the "gallery" it picks from is rebuilt from the replica only every
``reload_poll_s`` (2 s), so for a moment after an erasure it still holds the erased
person: only the gate stands between them and the door. The loop ends when the spec's
stop file appears.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any


def run(spec: dict[str, Any]) -> int:
    import numpy as np

    from enroll.store import PeopleStore
    from kiosk.config import SiteConfig
    from kiosk.live.events import EventLog
    from kiosk.site.replica import ReplicaStore
    from kiosk.site.state import SiteState
    from kiosk.site.sync import SiteSync
    from kiosk.trials.site import SiteTrialStore
    from models.recognition import Prediction

    site = SiteConfig(**spec["site"])
    root = Path(spec["root"])
    people_dir, events_dir = root / "people", root / "events"
    stop = Path(spec["stop_file"])
    rate = float(spec.get("events_per_s", 0.0))
    trial_every = int(spec.get("trial_every", 0))
    store = ReplicaStore(people_dir, SiteState(people_dir))
    reader = PeopleStore(people_dir)  # the recognizer's own handle, as in the kiosk
    log = EventLog(events_dir)
    bundle = Path(spec["bundle_path"]) if spec.get("bundle_path") else None
    sync = SiteSync(site, store, events_dir=events_dir, bundle_path=bundle)
    trials = SiteTrialStore(root / "trials.sqlite", SiteState(people_dir), site.kiosk_id)
    session = trials.create_session(label="sim", duration=0.2, threshold=0.5, min_share=0.5)
    rng = random.Random()
    track = rng.randrange(1 << 30)
    thumb = np.zeros((16, 16, 3), dtype=np.uint8)
    sync.start()
    print("ready", flush=True)
    tick, visitors = 0, 0
    reload_s = float(spec.get("reload_poll_s", 2.0))
    people, built = reader.people(), time.monotonic()
    try:
        while not stop.exists():
            tick += 1
            if rate > 0 and time.monotonic() - built > reload_s:
                people, built = reader.people(), time.monotonic()
            if rate > 0 and people and not sync.gate.refusal():
                person = rng.choice(people)
                if sync.gate.may_name(person.name):
                    track += 1
                    log.append(person.uid, person.name, 0.9, track, thumb)
            if trial_every and tick % trial_every == 0:
                visitors += 1
                name = f"visitor {visitors}"
                session.add_participant(name, enrolled=False)
                now = time.monotonic()
                session.start(name, now=now, wall_clock=time.time())
                session.add_frame(now + 0.01, Prediction(None, "", 0.1))
                session.finish()
            time.sleep(1.0 / rate if rate > 0 else 0.05 if trial_every else 0.5)
    finally:
        sync.close()
        trials.close()
        reader.close()
        store.close()
    return 0


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    return run(spec)


if __name__ == "__main__":
    raise SystemExit(main())
