"""The documents under /api/: what `--json` of the CLI prints, through the same service functions.

- `jobs(...)`      /api/jobs                = `jobctl status --json` (same filters: state, label, limit, all;
                                              and user, queue)
- `table(...)`     /api/table               = the terminal table's cells (the Jobs page)
- `job(...)`       /api/jobs/ID             = `jobctl describe ID --json`
- `log_chunk(...)` /api/jobs/ID/logs        = a bounded piece of one rank's log
- `control(...)`   POST /api/jobs/ID/VERB   = `jobctl VERB ID --json` (stop, start, kill, retry)
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from jobctl.core import states
from jobctl.errors import NotFound, UsageError
from jobctl.store.records import Job

if TYPE_CHECKING:
    from jobctl.app.session import Service

LOG_CHUNK = 1 << 16  # bytes of log sent at most per request
LOG_TAIL = 1 << 18  # a first request without an offset starts this far before the end
VERBS = ("stop", "start", "kill", "retry")


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = [v for v in query.get(key, []) if v != ""]
    return values[-1] if values else None


def _many(query: dict[str, list[str]], key: str) -> list[str]:
    return [part.strip() for v in query.get(key, []) for part in v.split(",") if part.strip()]


def _int(value: str | None, what: str, minimum: int = 0) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < minimum or len(value) > 18:
        raise UsageError(f"{what}: expected a whole number >= {minimum}, got {value[:30]!r}")
    return int(value)


def _rows(service: Service, query: dict[str, list[str]]) -> tuple[list[Job], list[Job]]:
    """(rows that match every filter, rows before the user/queue filters) as `status` selects them."""
    labels = []
    for item in _many(query, "label"):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"label: expected k=v, got {item[:60]!r}")
        labels.append((key, value))
    all_jobs = _one(query, "all") in ("1", "true", "yes")
    rows = service.status_rows(
        [],
        all_jobs=all_jobs,
        state=_many(query, "state") or None,
        labels=labels or None,
        limit=_int(_one(query, "limit"), "limit"),
    )
    user, queue = _one(query, "user"), _one(query, "queue")
    kept = [r for r in rows if (user is None or r.user == user) and (queue is None or r.queue == queue)]
    return kept, rows


def jobs(service: Service, query: dict[str, list[str]]) -> list[dict[str, Any]]:
    from jobctl.cli.views import job_json

    rows, _ = _rows(service, query)
    return [job_json(r) for r in rows]


def table(service: Service, query: dict[str, list[str]]) -> dict[str, Any]:
    """The status table as the terminal shows it: the same columns, texts and order."""
    from jobctl.cli.output import DEFAULT_ROWS
    from jobctl.cli.views import COLUMNS, cap_rows, table_cells

    rows, unfiltered = _rows(service, query)
    left: dict[str, int] = {}
    if _one(query, "limit") is None:  # as the terminal's table: at most DEFAULT_ROWS, and how many more
        rows, left = cap_rows(rows, DEFAULT_ROWS)
    now = time.time()
    return {
        "more": _more(left),
        "user": service.user,
        "columns": list(COLUMNS),
        "rows": [
            {
                "id": r.id,
                "state": r.state,
                "user": r.user,
                "queue": r.queue,
                "cells": table_cells(r, now),
            }
            for r in rows
        ],
        "users": sorted({r.user for r in unfiltered}),
        "queues": sorted({r.queue for r in unfiltered}),
        "states": list(states.ALL_STATES),
    }


def _more(left: dict[str, int]) -> str | None:
    """`... and 812 more (800 COMPLETED, 12 PENDING); filter by state, label, queue or user to see them`."""
    if not left:
        return None
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(left.items(), key=lambda kv: -kv[1]))
    return f"... and {sum(left.values())} more ({by_state}); filter by state, label, queue or user to see them"


def _job_row(service: Service, job_id: int) -> Job:
    rows = service.select([str(job_id)], missing_ok=True)
    if not rows:
        raise NotFound(f"no job {job_id}")
    return rows[0]


def job(service: Service, job_id: int) -> dict[str, Any]:
    from jobctl.cli.output import describe_json

    service.refresh_local()  # as `describe` does: the true end of a job that ended while no supervisor ran
    row = _job_row(service, job_id)
    if service.refresh([row]):  # a mirrored backend (Slurm) asked about it: read it again
        row = _job_row(service, job_id)
    return describe_json(service, row)


def _utf8_cut(data: bytes) -> int:
    """Where to cut `data` so that no UTF-8 character is split (the rest comes with the next piece)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)  # ends in ASCII
        if byte >= 0xC0:  # the lead byte of the last character
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


def log_chunk(service: Service, job_id: int, query: dict[str, list[str]]) -> dict[str, Any]:
    """Up to LOG_CHUNK bytes of one rank's log of one attempt, from `offset` (default: the last
    LOG_TAIL bytes, from a line start). `finished`: the job is over, nothing more will be written."""
    row = _job_row(service, job_id)
    attempt = _int(_one(query, "attempt"), "attempt", 1) or row.attempt
    rank = _int(_one(query, "rank"), "rank") or 0
    if not 0 <= rank < row.num_nodes:
        raise UsageError(f"rank: the job has ranks 0 to {row.num_nodes - 1}")
    if row.attempt == 0:
        attempt = 0
    elif attempt > row.attempt:
        raise UsageError(f"attempt: job {job_id} has attempts 1 to {row.attempt}")
    offset = _int(_one(query, "offset"), "offset")
    finished = row.state in states.TERMINAL and row.alloc is None
    doc: dict[str, Any] = {
        "job": job_id,
        "attempt": attempt,
        "attempts": row.attempt,
        "rank": rank,
        "num_nodes": row.num_nodes,
        "state": row.state,
        "finished": finished or attempt < row.attempt,
        "offset": offset or 0,
        "next_offset": offset or 0,
        "size": 0,
        "text": "",
    }
    if attempt == 0:
        return doc
    path = service.paths.attempt_dir(job_id, attempt) / f"rank{rank}.log"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return doc
    except OSError as exc:
        raise UsageError(f"job {job_id}: cannot read the log of rank {rank} ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        import stat

        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UsageError(f"job {job_id}: the log of rank {rank} is not a regular file")
        size = os.fstat(handle.fileno()).st_size
        if offset is None:  # the last LOG_TAIL bytes, from the start of a line
            offset = max(0, size - LOG_TAIL)
            if offset:
                handle.seek(offset)
                head = handle.read(4096)
                newline = head.find(b"\n")
                offset += newline + 1 if newline >= 0 else 0
        offset = min(offset, size)
        handle.seek(offset)
        data = handle.read(LOG_CHUNK)
    cut = _utf8_cut(data) if len(data) == LOG_CHUNK else len(data)
    data = data[:cut] if cut else data
    doc.update(
        offset=offset,
        next_offset=offset + len(data),
        size=size,
        text=data.decode("utf-8", errors="replace"),
        more=offset + len(data) < size,
    )
    return doc


def control(service: Service, job_id: int, verb: str) -> tuple[bool, list[dict[str, Any]]]:
    """Run `jobctl VERB JOB` through the same functions as the CLI; (all ok, the `--json` report)."""
    from jobctl.app import control as actions

    if service.paths.shared:  # a shared queue: the supervisor acts, with its ownership check (docs/shared.md)
        from jobctl.app.remote import RemoteService

        results = RemoteService(service.paths).bulk(verb, [str(job_id)], False)
        return all(r.ok for r in results), [_result_doc(r) for r in results]
    act = {
        "stop": lambda r: actions.stop(service, r),
        "start": lambda r: actions.start(service, r),
        "kill": lambda r: actions.kill(service, r),
        "retry": lambda r: actions.retry(service, r),
    }[verb]
    results = actions.bulk(service, [str(job_id)], False, verb, act)
    return all(r.ok for r in results), [_result_doc(r) for r in results]


def _result_doc(r: Any) -> dict[str, Any]:
    return {"id": r.job_id, "name": r.name, "ok": r.ok, "message": r.message, "state": r.state, "selector": r.selector}
