"""The replay's sample traces (bench/pools_replay.py), made again from their seeds:
``python -m bench.traces.make_traces`` writes office_day.csv and ci_burst_day.csv here.

- office_day.csv: 64 people arrive from 8:00 to 10:00, most around 9:00, each holding a
  ``workstation`` (a tenth a ``gpu``) for 1 to 8 hours, all given back by 19:00; 8 more
  take one around midday for 1 to 3 hours; nothing at night.
- ci_burst_day.csv: ``ci`` runners for jobs: 6 nightly jobs at 2:00 for 30 to 60 minutes,
  an hourly job for 10 minutes, and two bursts of 60 jobs within ten minutes, at 9:00 and
  at 14:00, each holding its runner 5 to 20 minutes.
"""

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = ("time_s", "event", "user", "vm_type")
HOUR = 3600


def office_day(seed: int = 20260302) -> list[tuple]:
    draws = random.Random(seed)
    events = []
    for number in range(64):
        user = f"person-{number:02d}"
        vm_type = "gpu" if number % 10 == 0 else "workstation"
        arrive = min(max(draws.gauss(9 * HOUR, 20 * 60), 8 * HOUR), 10 * HOUR)
        leave = min(arrive + draws.uniform(1, 8) * HOUR, 19 * HOUR)
        events += [(arrive, "assign", user, vm_type), (leave, "release", user, vm_type)]
    for number in range(8):
        user = f"visitor-{number}"
        arrive = draws.uniform(11.5 * HOUR, 14 * HOUR)
        leave = arrive + draws.uniform(1, 3) * HOUR
        events += [(arrive, "assign", user, "workstation"), (leave, "release", user, "workstation")]
    return events


def ci_burst_day(seed: int = 20260303) -> list[tuple]:
    draws = random.Random(seed)
    events = []

    def job(name: str, start: float, hold_low: float, hold_high: float) -> None:
        end = start + draws.uniform(hold_low, hold_high)
        events.extend([(start, "assign", name, "ci"), (end, "release", name, "ci")])

    for number in range(6):
        job(f"nightly-{number}", 2 * HOUR + draws.uniform(0, 120), 30 * 60, 60 * 60)
    for hour in range(24):
        job(f"hourly-{hour:02d}", hour * HOUR + 300, 8 * 60, 12 * 60)
    for burst, at in (("morning", 9 * HOUR), ("afternoon", 14 * HOUR)):
        for number in range(60):
            job(f"{burst}-{number:02d}", at + draws.uniform(0, 600), 5 * 60, 20 * 60)
    return events


def write(path: Path, events: list[tuple]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for moment, kind, user, vm_type in sorted(events):
            writer.writerow([round(moment), kind, user, vm_type])


def main() -> None:
    write(HERE / "office_day.csv", office_day())
    write(HERE / "ci_burst_day.csv", ci_burst_day())


if __name__ == "__main__":
    main()
