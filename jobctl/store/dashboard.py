"""The queries of the dashboard (SPEC section 13) that the CLI has no command for.

Only reads, each one statement: the attempts that overlap a time window, with their jobs (for the
Timeline and the Usage page), and the jobs submitted since a time, counted (for the Usage page).
Everything else the dashboard shows comes from the same service functions as the CLI's `--json`.
`Store` has these methods through `DashboardQueries`.
"""

from typing import NamedTuple

from jobctl.store.base import Queries
from jobctl.store.records import Attempt, Job, build, columns

_SPAN_COLUMNS = f"{columns(Attempt, 'a')}, {columns(Job, 'j')}"
_ATTEMPT_WIDTH = len(columns(Attempt).split(", "))


class AttemptSpan(NamedTuple):
    """One attempt that started, with its job as it is now (the job's JSON columns stay text)."""

    attempt: Attempt
    job: Job
    started_at: float  # the attempt's start (`attempt.started_at`, never None here)


class JobCount(NamedTuple):
    """Jobs submitted in a period with one (user, name, state)."""

    user: str
    name: str
    state: str
    jobs: int  # how many jobs
    waited: float  # seconds from submission to the first start, summed over the started ones
    started: int  # how many of them started


class DashboardQueries(Queries):
    def attempts_between(self, start: float, end: float) -> list[AttemptSpan]:
        """Attempts that ran at some moment of [start, end], oldest start first.

        An attempt without a recorded end counts as running, and so does the current attempt of a
        job that still holds an allocation (the caller uses the job's own end when the job is
        terminal and holds nothing any more)."""
        rows = self._tuples(
            f"SELECT {_SPAN_COLUMNS} FROM attempts a JOIN jobs j ON j.id = a.job_id"
            " WHERE a.started_at IS NOT NULL AND a.started_at <= ?"
            " AND (a.ended_at IS NULL OR a.ended_at >= ? OR (j.attempt = a.n AND j.alloc IS NOT NULL))"
            " ORDER BY a.started_at, a.job_id, a.n",
            (end, start),
        )
        spans = []
        for row in rows:
            attempt = build(Attempt, row[:_ATTEMPT_WIDTH])
            assert attempt.started_at is not None  # selected so
            spans.append(AttemptSpan(attempt, build(Job, row[_ATTEMPT_WIDTH:]), attempt.started_at))
        return spans

    def jobs_since(self, since: float) -> list[JobCount]:
        """Jobs submitted since `since`, counted by (user, name, state), with their total wait."""
        rows = self._tuples(
            "SELECT j.user, j.name, j.state, COUNT(*),"
            " COALESCE(SUM(f.first_start - j.submitted_at), 0), COUNT(f.first_start)"
            " FROM jobs j LEFT JOIN (SELECT job_id, MIN(started_at) AS first_start FROM attempts"
            " GROUP BY job_id) f ON f.job_id = j.id"
            " WHERE j.submitted_at >= ? GROUP BY j.user, j.name, j.state",
            (since,),
        )
        return [JobCount(r[0], r[1], r[2], r[3], max(0.0, float(r[4])), r[5]) for r in rows]
