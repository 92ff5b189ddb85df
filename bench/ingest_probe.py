#!/usr/bin/env python3
"""Watch Hookscope's indexing while bench/ingest.sh holds a fixed rate of load on it.

Usage: ingest_probe.py watch BASE_URL TOKEN SECONDS OUT_JSON [DB_FILE]
       ingest_probe.py drain BASE_URL TOKEN LIMIT_SECONDS

watch, for SECONDS, in two threads, each on a keep-alive connection of its own:
  probe    every PROBE_EVERY s, posts one KeldairHR envelope of type `bench.probe` with a
           never-seen id to /hooks/keldair, then polls GET /api/events?type=bench.probe&limit=1
           until that event is the newest item. Records acknowledgement-to-listed latency: from
           the 2xx answer to the first list answer that shows the event. A probe not listed
           within PROBE_GIVE_UP s counts as not listed.
  backlog  every SAMPLE_EVERY s, reads `pending` from GET /api/events?limit=1 (acknowledged but
           not listed yet, as a reader sees it after its up-to-100 ms catch-up) and, when DB_FILE
           is given, the backlog straight from SQLite just before (last seq minus indexed_seq:
           what indexing trails by without a reader's help).
  Writes OUT_JSON: {"probes": [{"t", "ack_ms", "listed_ms" | null}], "probes_2xx", "samples":
  [{"t", "pending", "db_backlog", "read_ms"}], "errors": [...]}; t in seconds from the start.
drain: after the load, reads GET /api/events?limit=1 every 0.25 s until `pending` is 0; prints
  the seconds it took, or "never" after LIMIT_SECONDS.

Standard library only; talks to 127.0.0.1 only (BASE_URL is built by the script).
"""
import http.client
import json
import sqlite3
import sys
import threading
import time
import urllib.parse
import uuid

PROBE_EVERY = 0.2  # seconds between probe posts
POLL_EVERY = 0.01  # seconds between list reads while a probe is not listed yet
PROBE_GIVE_UP = 5.0  # seconds after its 2xx; a probe listed later counts as never listed
SAMPLE_EVERY = 1.0  # seconds between backlog samples


class Client:
    """One keep-alive HTTP/1.1 connection to the server, reopened after an error."""

    def __init__(self, base_url, token):
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname, url.port
        self.auth = {"Authorization": f"Bearer {token}"}
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """Returns (status, parsed JSON body or None)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            self.conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, None

    def pending(self):
        status, page = self.request("GET", "/api/events?limit=1")
        if status != 200 or page is None:
            raise RuntimeError(f"GET /api/events answered {status}")
        return page.get("pending", 0)


def probe_body(event_id):
    return json.dumps({
        "id": event_id,
        "type": "bench.probe",
        "version": "2022-02-23",
        "dateOccurred": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "data": {"probe": True},
    }).encode()


def newest_probe_id(client):
    status, page = client.request("GET", "/api/events?type=bench.probe&limit=1")
    if status != 200 or page is None:
        raise RuntimeError(f"GET /api/events?type=bench.probe answered {status}")
    items = page.get("items") or []
    return items[0].get("eventId") if items else None


def one_probe(client, start):
    """Posts one probe and waits until it is listed; returns its record, or None if not 2xx."""
    event_id = str(uuid.uuid4())
    sent = time.monotonic()
    status, _ = client.request("POST", "/hooks/keldair", body=probe_body(event_id),
                               headers={"Content-Type": "application/json"})
    acked = time.monotonic()
    if not 200 <= status < 300:
        raise RuntimeError(f"a probe was answered {status}")
    record = {"t": round(sent - start, 3), "ack_ms": round((acked - sent) * 1000, 2),
              "listed_ms": None}
    while time.monotonic() - acked < PROBE_GIVE_UP:
        if newest_probe_id(client) == event_id:
            record["listed_ms"] = round((time.monotonic() - acked) * 1000, 2)
            break
        time.sleep(POLL_EVERY)
    return record


def run_probes(client, start, stop_at, out):
    next_at = start
    while time.monotonic() < stop_at:
        try:
            out["probes"].append(one_probe(client, start))
            out["probes_2xx"] += 1
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            out["errors"].append(f"probe at {time.monotonic() - start:.1f} s: {e}")
        next_at = max(next_at + PROBE_EVERY, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))


def db_backlog(db):
    if db is None:
        return None
    try:
        return db.execute("SELECT COALESCE(MAX(seq), 0) - (SELECT indexed_seq FROM indexing) "
                          "FROM deliveries").fetchone()[0]
    except sqlite3.Error:
        return None


def run_samples(client, db, start, stop_at, out):
    next_at = start
    while time.monotonic() < stop_at:
        backlog = db_backlog(db)
        asked = time.monotonic()
        try:
            pending = client.pending()
            out["samples"].append({"t": round(asked - start, 3), "pending": pending,
                                   "db_backlog": backlog,
                                   "read_ms": round((time.monotonic() - asked) * 1000, 2)})
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            out["errors"].append(f"sample at {asked - start:.1f} s: {e}")
        next_at += SAMPLE_EVERY
        time.sleep(max(0.0, next_at - time.monotonic()))


def watch(base_url, token, seconds, out_path, db_path=None):
    out = {"probes": [], "probes_2xx": 0, "samples": [], "errors": []}
    # Read-only, and never waits on the server's write lock: WAL readers do not block.
    db = (sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
          if db_path else None)
    start = time.monotonic()
    stop_at = start + seconds
    threads = [
        threading.Thread(target=run_probes, args=(Client(base_url, token), start, stop_at, out)),
        threading.Thread(target=run_samples,
                         args=(Client(base_url, token), db, start, stop_at, out)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f)


def drain(base_url, token, limit):
    client = Client(base_url, token)
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if client.pending() == 0:
                print(round(time.monotonic() - start, 2))
                return
        except (OSError, RuntimeError, http.client.HTTPException):
            pass
        time.sleep(0.25)
    print("never")


def main():
    args = sys.argv[1:]
    if len(args) in (5, 6) and args[0] == "watch":
        watch(args[1], args[2], float(args[3]), args[4], args[5] if len(args) == 6 else None)
    elif len(args) == 4 and args[0] == "drain":
        drain(args[1], args[2], float(args[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
