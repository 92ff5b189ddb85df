#!/usr/bin/env python3
"""Write N distinct KeldairHR `applicant.hired` events of about TARGET_BYTES each, one compact
JSON per line (bench/ingest.sh uses ~1 KB bodies, and a few of ~1 MiB for its memory check).

Usage: gen_payloads.py N SAMPLE_JSON OUT_FILE [TARGET_BYTES]

Each line keeps the sample's envelope (`id`, `type`, `version`, `dateOccurred`, `data`) with
`id` first, and varies the applicant (id, names, email, dates, department, manager) so no two
lines are alike; a `notes` field pads every line to exactly TARGET_BYTES (default 1024). The
`id` is a random UUID v4 here, but `ingest.lua` replaces it with a fresh one on every request,
so the file is a pool of bodies, not a list of events. Standard library only; seeded, so the same
N gives the same file.
"""
import json
import random
import sys
import uuid

FIRST = ["Amara", "Jonas", "Priya", "Mateo", "Keiko", "Olu", "Sven", "Lucia", "Ravi", "Noor",
         "Tomasz", "Aiko", "Chidi", "Ingrid", "Diego", "Mei", "Farah", "Elias", "Zanele", "Hugo"]
LAST = ["Okafor", "Lindqvist", "Raman", "Silva", "Tanaka", "Adeyemi", "Berg", "Moreno",
        "Iyer", "Haddad", "Nowak", "Sato", "Eze", "Holm", "Ruiz", "Chen", "Karimi", "Vogel"]
DEPTS = ["Platform Engineering", "Data", "Sales", "People Operations", "Finance", "Design",
         "Customer Success", "Security", "Marketing", "Legal"]
TYPES = ["full-time", "part-time", "contract", "internship"]


def main() -> None:
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    n = int(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        base = json.load(f)
    out = sys.argv[3]
    target = int(sys.argv[4]) if len(sys.argv) == 5 else 1024
    rng = random.Random(20220223)

    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            ev = json.loads(json.dumps(base))  # deep copy of the envelope
            first, last = rng.choice(FIRST), rng.choice(LAST)
            day = 1 + i % 28
            occurred = f"2022-02-{day:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}+00:00"
            ev["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            ev["type"] = "applicant.hired"
            ev["version"] = "2022-02-23"
            ev["dateOccurred"] = occurred
            applicant = ev.setdefault("data", {}).setdefault("applicant", {})
            applicant.update({
                "id": f"apl_{i:08d}",
                "firstName": first,
                "lastName": last,
                "email": f"{first.lower()}.{last.lower()}.{i}@example.com",
                "dateOfBirth": f"19{70 + i % 30}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "nationalId": f"{100 + i % 900:03d}-{10 + i % 90:02d}-{i % 10000:04d}",
                "jobId": f"job_{1000 + i % 5000}",
                "department": rng.choice(DEPTS),
                "startDate": f"2022-03-{1 + i % 28:02d}",
                "hiredAt": occurred,
                "employmentType": rng.choice(TYPES),
                "manager": {"id": f"usr_{i % 97}", "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}"},
            })
            # `id` first so the load script can swap it cheaply.
            ev = {"id": ev.pop("id"), **ev}
            applicant["notes"] = ""
            size = len(json.dumps(ev, separators=(",", ":")).encode())
            filler = f"Hired after {2 + i % 5} interviews; references checked; offer {i}. "
            applicant["notes"] = (filler * (target // len(filler) + 1))[: max(0, target - size)]
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
