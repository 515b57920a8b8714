"""Presenting results on a terminal or as JSON. The CLI's commands end up here; no logic lives here
that a script could not get through `--json`."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from jobctl.app.session import ActionResult, Service, backend_class, masked_envs
from jobctl.core import states
from jobctl.errors import NotFound, StateError, UsageError
from jobctl.store.records import Job, loads

# the default table (no selector, --all or --limit) shows at most this many rows, then a footer line
DEFAULT_ROWS = 500


def console(stderr: bool = False):
    from rich.console import Console

    no_color = bool(os.environ.get("NO_COLOR"))
    # stderr carries messages: one line each, never broken at the terminal's width (a script greps them)
    out = Console(stderr=stderr, highlight=False, no_color=no_color, soft_wrap=stderr)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        # piped: never squeeze or cut columns, a script may parse them (unless COLUMNS asks for a width)
        out = Console(stderr=stderr, highlight=False, no_color=True, soft_wrap=stderr, width=400)
    return out


def dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_plan(plan, as_json: bool) -> None:
    if as_json:
        dump({"jobs": plan.jobs, "warnings": plan.warnings, "problems": plan.problems})
        return
    from rich.table import Table

    # FITS says yes or no; why not is said once below the table, so that the table stays narrow
    # (a long reason in a cell wrapped into a column of short lines at 80 columns)
    table = Table(
        title="Plan (dry run: nothing recorded)",
        title_justify="left",
        box=None,
        pad_edge=False,
        padding=(0, 2, 0, 0),
        header_style="bold",
    )
    for col in ("NAME", "RESOURCES", "BACKEND", "FITS", "DEPENDS ON"):
        table.add_column(col)
    problems = list(dict.fromkeys(plan.problems))  # a pipeline's tasks share their file's problems
    for job in plan.jobs:
        deps = ", ".join(str(d) for d in job["depends_on"]) or "-"
        name = job["name"] + (f" (x{job['array']})" if job["array"] else "")
        table.add_row(name, job["resources"], job["backend"], "yes" if job["fits"] else "no", deps)
        if not job["fits"] and not any(job["why_not"] in problem for problem in problems):
            problems.append(f"{job['name']} does not fit: {job['why_not']}")
    out = console()
    out.print(table)
    for problem in problems:  # one line each when piped (a script greps them), wrapped on a terminal
        out.print(
            f"on this machine, a real launch would refuse: {problem}",
            style="yellow",
            markup=False,
            soft_wrap=not out.is_terminal,
        )


# What a bulk action says when `--all` found no job it applies to (kill --all on an idle queue)
NOTHING = {
    "stop": "no running or waiting job to stop",
    "start": "no SUSPENDED job to start",
    "retry": "no FAILED or KILLED job to retry",
    "kill": "no unfinished job to kill",
    "rm": "no finished job to remove",
    "update": "no unfinished job to update",
}


def report(results: list[ActionResult], as_json: bool, nothing: str = "no jobs") -> int:
    """Print one line per result on stderr (or one JSON list); `nothing`: the line when there is no result."""
    if as_json:
        dump(
            [
                {
                    "id": r.job_id,
                    "name": r.name,
                    "ok": r.ok,
                    "message": r.message,
                    "state": r.state,
                    "selector": r.selector,
                }
                for r in results
            ]
        )
    else:
        err = console(stderr=True)
        for r in results:
            err.print(r.message if r.ok else f"error: {r.message}", style=None if r.ok else "red", markup=False)
        if not results:
            err.print(NOTHING.get(nothing, nothing), markup=False)
    return 0 if all(r.ok for r in results) else 1


def status(
    service: Service,
    selectors,
    *,
    all_jobs,
    state,
    labels,
    limit,
    watch: bool,
    as_json: bool,
    queue: str | None = None,
    expand: bool = False,
    user: str | None = None,
) -> None:
    """`user`: only that user's jobs (`--user NAME`, `--mine`)."""
    from jobctl.cli.views import cap_rows, job_json, status_table

    def rows():
        collapse = not (as_json or expand or selectors)
        # the database can hand over one task per array (a shared queue's supervisor sends them all)
        local = not getattr(service, "remote", False)
        extra = {"collapse_arrays": True} if collapse and local and user is None and queue is None else {}
        found = service.status_rows(selectors, all_jobs=all_jobs, state=state, labels=labels, limit=limit, **extra)
        if user is not None:  # status --user NAME, --mine (a shared queue)
            found = [r for r in found if r.user == user]
        if queue is not None:  # status --queue NAME
            found = [r for r in found if r.queue == queue]
        if collapse:  # an array as one row (SPEC 9)
            from jobctl.cli.arrays import summarize

            found = summarize(service.array_stats, found)
        return found

    if as_json:
        dump([job_json(r) for r in rows()])
        return
    out = console()

    def table(found, fit_height: bool = False):
        cap = None if limit or all_jobs or selectors else DEFAULT_ROWS
        if fit_height:  # a live view shows what fits on the screen, and says how many more there are
            cap = min(cap or len(found), max(1, out.height - 5))
        left = None
        if cap is not None:
            found, left = cap_rows(found, cap)
        return status_table(found, service.user, width=out.width, left=left)

    if not watch:
        found = rows()
        out.print(table(found))
        if not found:  # an empty table alone reads like a fault: say why it is empty (stderr: not data)
            if state or labels or queue is not None or user is not None:
                why = "no job matches these filters"
            else:
                why = "no unfinished jobs" if limit == 0 else "no jobs (start one with: jobctl launch job.yaml)"
            console(stderr=True).print(why, markup=False)
        return
    from rich.live import Live

    try:
        with Live(table(rows(), True), console=out, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(1.0)  # one cheap query a second: no hammering of the database
                live.update(table(rows(), True), refresh=True)
    except KeyboardInterrupt:
        pass


def wait_and_report(
    service: Service, ids: list[int], *, follow: bool = False, as_json: bool = False, timeout: float | None = None
) -> int:
    from jobctl.cli.views import job_json, with_message

    if follow:
        _follow_jobs(service, ids)
    spinner = None
    if sys.stderr.isatty() and not follow and not as_json:
        spinner = console(stderr=True).status("waiting…")
        spinner.start()
    started = time.monotonic()
    said: set[int] = set()

    def tick(rows):
        for r in rows:  # a stopped or held job waits for `start`: say so once, or the wait looks hung
            if r.state == states.SUSPENDED and r.id not in said:
                said.add(r.id)
                (spinner.console if spinner else console(stderr=True)).print(
                    f"job {r.id} is {states.status_text(r.state, r.detail)}; it waits for: jobctl start {r.id}",
                    markup=False,
                )
        if spinner:
            text = ", ".join(f"{r.id} {states.status_text(r.state, r.detail)}" for r in rows[:3])
            spinner.update(f"{text}  {int(time.monotonic() - started)}s")

    try:
        rows = service.wait_for(ids, timeout=timeout, on_tick=tick)
    finally:
        if spinner:
            spinner.stop()
    if as_json:
        dump([job_json(r) for r in rows])  # always a list, as `launch --json` prints
    else:
        err = console(stderr=True)
        for r in rows:
            text = states.status_text(r.state, r.detail)
            if r.state != states.COMPLETED:
                text = with_message(text, r.message)
            err.print(f"job {r.id} ({r.name}): {text}", markup=False)
    codes = [states.wait_exit_code(r.state, r.reason, r.exit_code) for r in rows]
    return next((c for c in codes if c), 0)


NOT_STARTED_HINT_S = 1.5  # `--follow`/`logs -f` of a job that has not started says why after this long


def _follow_jobs(service: Service, ids: list[int]) -> None:

    for job_id in ids:
        _follow_one(service, job_id, None, from_start=True)


def _follow_one(service: Service, job_id: int, rank: int | None, from_start: bool) -> None:
    from jobctl.app.logs import follow, log_files

    def row() -> Job:
        found = service.row_by_id(job_id)  # through the socket in a shared queue
        if found is None:
            raise NotFound(f"job {job_id} was removed")
        return found

    since, said = time.monotonic(), [False]

    def files():
        r = row()
        if r.attempt == 0:
            if not said[0] and r.state not in states.TERMINAL and time.monotonic() - since > NOT_STARTED_HINT_S:
                said[0] = True  # once: following a job that waits must not look like a hang
                status = states.status_text(r.state, r.detail)
                console(stderr=True).print(f"job {job_id} is {status}; its output shows when it starts", markup=False)
            return None
        return log_files(service.paths.job_dir(job_id), r.attempt, r.num_nodes, rank)

    next_check = [time.monotonic() + 1.0]

    def finished():
        r = row()
        if backend_class(r).mirrored:
            service.refresh([r])
            r = row()
        elif r.state not in states.TERMINAL or r.alloc is not None:
            if time.monotonic() >= next_check[0]:  # record an end nobody recorded; bring a killed supervisor back
                service.refresh_local()
                next_check[0] = time.monotonic() + 1.0
                r = row()
        return r.state in states.TERMINAL and r.alloc is None

    service.wake_supervisor(start=True)
    service.refresh_local()
    follow(files, finished, from_start=from_start)


def logs(service: Service, selector: str, *, follow: bool, rank, attempt, tail, batch: bool = False) -> None:
    from jobctl.app.logs import log_files, print_logs

    row = service.job(selector)
    if service.refresh([row]):
        row = service.job(str(row.id))
    if follow and attempt is None:
        if tail is not None:
            files = log_files(service.paths.job_dir(row.id), max(row.attempt, 1), row.num_nodes, rank)
            print_logs(files, tail)
            _follow_one(service, row.id, rank, from_start=False)
        else:
            _follow_one(service, row.id, rank, from_start=True)
        row = service.job(str(row.id))
        if row.attempt == 0 and row.state in states.TERMINAL:  # nothing was streamed: say why
            raise StateError(
                f"job {row.id} ({row.name}) ended without running: {states.status_text(row.state, row.detail)}"
            )
        return
    n = attempt if attempt is not None else row.attempt
    if n == 0:
        status = states.status_text(row.state, row.detail)
        if row.state in states.TERMINAL:
            raise StateError(f"job {row.id} ended without running: {status}")
        raise StateError(f"job {row.id} has not started yet ({status}); use -f to wait for its output")
    if not 1 <= n <= row.attempt:
        raise UsageError(f"--attempt: job {row.id} has attempts 1 to {row.attempt}")
    if batch:  # Slurm's output of the batch script: where errors before or around the workers show
        return print_logs([(0, _backend_for(row, service).batch_log(row, n))], tail)
    print_logs(log_files(service.paths.job_dir(row.id), n, row.num_nodes, rank), tail)


def describe(service: Service, selector: str, as_json: bool) -> None:
    from jobctl.cli.views import clock_seconds, job_json, resources, seconds_text
    from jobctl.core.units import count_text

    service.refresh_local()  # the true end of a job that ended while no supervisor ran
    row = service.job(selector)
    if service.refresh([row]):
        row = service.job(str(row.id))
    spec = service.spec_of(row)
    details = service.details(row)
    spec["envs"] = masked_envs(spec, loads(row.envs, {}))
    masked_notify(spec)
    held = loads(row.alloc)
    doc = job_json(row)
    details.update(_backend_for(row, service).describe(row))
    if as_json:
        dump(describe_document(doc, spec, held, details))
        return
    from jobctl.app.reports import latest_usage, notification_events, usage_text

    usage = latest_usage(details["attempts"])
    out = console()
    labels = doc["labels"] or {}
    retries = spec.get("retries") or 0
    lines = [
        ("ID", row.id),
        ("Name", row.name),
        ("Status", doc["status"]),
        ("Reason", row.reason or "-"),
        ("Message", row.message or "-"),
        ("Resources", resources(row)),
        ("Backend", f"{row.backend}" + (f" ({row.backend_id})" if row.backend_id else "")),
        ("User", row.user),
        ("Priority", row.priority),  # the job's own (`update --priority` changes it), not the file's
        ("Queue", row.queue),
        ("Attempt", states.attempt_text(row.attempt, row.max_attempts)),
        ("Retries", f"{retries} (automatic, after a failure)" if retries else "0 (a failure is final)"),
        ("Timeout", seconds_text(spec.get("timeout")) + (" per attempt" if spec.get("timeout") else "")),
        ("Queue timeout", seconds_text(spec.get("queue_timeout"))),
        ("Labels", ", ".join(f"{k}={v}" for k, v in labels.items()) or "-"),
        ("Submitted", clock_seconds(row.submitted_at)),
        ("Started", clock_seconds(row.started_at)),
        ("Ended", clock_seconds(row.ended_at)),
        ("Exit code", "-" if row.exit_code is None else row.exit_code),
        ("Usage", usage_text(usage)),
        ("Workdir", spec.get("workdir")),
        ("Source", spec.get("source") or "-"),
    ]
    if row.array_index is not None:
        lines.insert(2, ("Array index", row.array_index))
        lines.insert(
            3,
            ("Array", f"{row.array_id}" + (f" (throttle {row.array_throttle})" if row.array_throttle else "")),
        )
    if row.start_at is not None and row.started_at is None:
        lines.append(("Not before", clock_seconds(row.start_at)))
    if held:
        devices = f", {held['accelerator']} {held['devices']}" if held.get("devices") else ""
        lines.append(("Holding", f"{count_text(held['cpus'], 'CPU')}, {held['memory_mib']} MiB{devices}"))
    if details["depends_on"]:
        lines.append(("Depends on", ", ".join(f"{d['dep_id']} ({d['condition']})" for d in details["depends_on"])))
    for i, (k, v) in enumerate((spec.get("envs") or {}).items()):  # one a line: a long PATH stays readable
        lines.append(("Envs" if i == 0 else "", f"{k}={v}"))
    if spec.get("file_mounts"):
        lines.append(("File mounts", ", ".join(f"{k} <- {v}" for k, v in spec["file_mounts"].items())))
    if spec.get("ignored"):
        lines.append(("Not honoured", ", ".join(sorted(spec["ignored"]))))
    from jobctl.core.notify import describe_target

    targets = loads(row.notify, [])  # the job's own and the config's, as launched
    if targets:
        lines.append(("Notify", "; ".join(f"{describe_target(t)} on {', '.join(t['on'])}" for t in targets)))
    if details.get("slurm_out"):
        lines.append(("Slurm out", details["slurm_out"]["path"]))
        lines.extend(("", f"| {line}") for line in details["slurm_out"]["tail"])
    for key, value in lines:  # a value of one long word (a PATH) stays beside its key, the terminal folds it
        text = str(value)
        out.print(f"{key + ':' if key else '':<14} {text}", markup=False, highlight=False, soft_wrap=" " not in text)
    if spec.get("setup"):
        out.print("\nSetup:", style="bold")
        out.print("  " + spec["setup"].strip().replace("\n", "\n  "), markup=False, highlight=False)
    out.print("\nRun:", style="bold")
    out.print("  " + spec["run"].strip().replace("\n", "\n  "), markup=False, highlight=False)
    if details["attempts"]:
        out.print("\nAttempts:", style="bold")
        for a in details["attempts"]:
            code = "" if a["exit_code"] is None else f", exit {a['exit_code']}"
            out.print(
                f"  {a['n']}: {clock_seconds(a['started_at'])} to {clock_seconds(a['ended_at'])}, "
                f"{a['outcome'] or 'running'}{code}",
                markup=False,
                highlight=False,
            )
    if details["workers"]:
        out.print("\nWorkers:", style="bold")
        for w in details["workers"]:
            code = "-" if w["exit_code"] is None else w["exit_code"]
            out.print(
                f"  attempt {w['attempt']} rank {w['rank']}: pid {w['pid'] or '-'}, {w['state']}, exit {code}, "
                f"log {w['log']}",
                markup=False,
                highlight=False,
            )
    out.print("\nEvents:", style="bold")
    timeline = []
    for e in details["events"]:
        move = f"{e['from_state'] or '-'} -> {e['to_state']}"
        said = [x for x in (e["reason"], e["message"]) if x]
        if len(said) == 2 and said[1].startswith(said[0]):  # `held at launch`, not `held, held at launch`
            said = said[1:]
        extra = "".join(f", {x}" for x in said)
        timeline.append((e["at"], f"{move}  by {e['actor'] or 'system'}{extra}"))
    timeline.extend(notification_events(details["notifications"]))  # deliveries, in time order
    timeline.sort(key=lambda item: item[0])
    for at, text in timeline:
        out.print(f"  {clock_seconds(at)}  {text}", markup=False, highlight=False)


def stats(service: Service, since: float | None, by: str, as_json: bool) -> None:
    """`jobctl stats`: usage summed per group (SPEC section 11), as a table or one JSON document."""
    from rich.table import Table

    from jobctl.app.reports import Group, bytes_text, check_by, seconds_text
    from jobctl.cli.views import clock, iso

    check_by(by)
    groups = service.usage_groups(since, by)
    total = Group("TOTAL")
    for g in groups:
        total.jobs += g.jobs
        total.completed += g.completed
        total.failed += g.failed
        total.killed += g.killed
        total.cpu_seconds += g.cpu_seconds
        total.gpu_seconds += g.gpu_seconds
        if g.peak_memory_bytes is not None:
            total.peak_memory_bytes = max(total.peak_memory_bytes or 0, g.peak_memory_bytes)
        total.waits.extend(g.waits)
    if as_json:
        dump(
            {
                "since": iso(since),
                "by": by,
                "groups": [g.as_json(by) for g in groups],
                "total": {k: v for k, v in total.as_json(by).items() if k != by},
            }
        )
        return
    out = console()
    title = "all jobs" if since is None else f"jobs submitted since {clock(since)}"
    out.print(f"Usage of {title}, by {by}", markup=False, highlight=False)
    if not groups:
        out.print("no jobs", markup=False, highlight=False)
        return
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    table.add_column(by.upper(), overflow="ellipsis", max_width=24, no_wrap=True)
    for name in ("JOBS", "DONE", "FAILED", "CPU-HRS", "GPU-HRS", "PEAK MEM", "MEAN WAIT"):
        table.add_column(name, justify="right", no_wrap=True)

    def cells(g: Group) -> list[str]:
        wait = sum(g.waits) / len(g.waits) if g.waits else None
        return [
            g.key,
            str(g.jobs),
            str(g.completed),
            str(g.failed),
            f"{g.cpu_seconds / 3600:.2f}",
            f"{g.gpu_seconds / 3600:.2f}",
            bytes_text(g.peak_memory_bytes),
            seconds_text(wait),
        ]

    for g in groups:
        table.add_row(*cells(g))
    if len(groups) > 1:
        table.add_row(*cells(total), style="bold")
    out.print(table)


def masked_notify(spec: dict[str, Any]) -> None:
    """A webhook's path is its secret (Slack, Discord): the spec shows the host only."""
    if spec.get("notify"):
        from jobctl.core.notify import describe_target

        spec["notify"] = [
            {**t, "value": describe_target(t).split(" ", 1)[1]} if t.get("kind") == "webhook" else t
            for t in spec["notify"]
        ]


def describe_document(doc: dict[str, Any], spec: dict[str, Any], held: Any, details: dict[str, Any]) -> dict[str, Any]:
    """The document of `describe --json` (also served by the dashboard's /api/jobs/ID)."""
    from jobctl.app.reports import latest_usage
    from jobctl.cli.views import iso

    usage = latest_usage(details["attempts"])
    for e in details["events"]:
        e["at"] = iso(e["at"])
    for a in details["attempts"]:
        a["started_at"], a["ended_at"] = iso(a["started_at"]), iso(a["ended_at"])
    for n in details.get("notifications", []):
        n["created_at"], n["next_try_at"] = iso(n["created_at"]), iso(n["next_try_at"])
        for t in n["tries"]:
            t["at"] = iso(t["at"])
    return {**doc, "usage": usage, "spec": spec, "held": held, **details}


def describe_json(service: Service, row: Job) -> dict[str, Any]:
    """`describe --json` of one job, as a document (with its backend's facts, e.g. Slurm's output)."""
    from jobctl.cli.views import job_json

    spec = service.spec_of(row)
    details = service.details(row)
    spec["envs"] = masked_envs(spec, loads(row.envs, {}))
    masked_notify(spec)
    details.update(_backend_for(row, service).describe(row))
    return describe_document(job_json(row), spec, loads(row.alloc), details)


def config_show(config, as_json: bool) -> None:
    values = config.effective()
    if as_json:
        dump(values)
        return
    from jobctl.home.config import unset_text

    out = console()
    for key, value in values.items():
        shown = unset_text(key) if value is None else json.dumps(value)
        out.print(f"{key} = {shown}", markup=False, highlight=False)
    out.print(f"# {config.path}", style="dim", markup=False)


def _supervisor_info(service: Service) -> dict[str, Any] | None:
    import psutil

    try:
        info = json.loads(service.paths.lock.read_text() or "{}")
    except (OSError, ValueError):
        return None
    pid = info.get("pid")
    try:
        proc = psutil.Process(pid)
        if "jobctl" not in " ".join(proc.cmdline()) or abs(proc.create_time() - info["started"]) > 2:
            return None
    except (psutil.Error, TypeError, KeyError):
        return None
    return {"pid": pid, "started": info["started"], "proc": proc}


def supervisor_status(service: Service, as_json: bool, doc: dict[str, Any] | None = None) -> int:
    """`doc`: what a shared queue's supervisor says of itself (its lock file is root's)."""
    if doc is None:
        info = _supervisor_info(service)
        capacity = None
        try:
            capacity = json.loads((service.paths.runtime / "capacity.json").read_text())
        except (OSError, ValueError):
            pass
        doc = {
            "pid": info["pid"] if info else None,
            "running": info is not None,
            "uptime_s": round(time.time() - info["started"], 1) if info else None,
            "capacity": capacity,
        }
    capacity, uptime = doc["capacity"], doc["uptime_s"]
    if as_json:
        dump(doc)
    else:
        out = console()
        if uptime is not None:  # two short lines rather than one that an 80-column terminal breaks
            out.print(f"supervisor running: pid {doc['pid']}, up {_uptime(uptime)}", markup=False, highlight=False)
            out.print(f"capacity: {_capacity_text(capacity)}", markup=False, highlight=False)
        else:
            out.print("supervisor not running (it starts on demand)", markup=False)
    return 0


def _uptime(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 86400}d {s % 86400 // 3600}h"
        if s >= 86400
        else (f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else (f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"))
    )


def _capacity_text(capacity: dict[str, Any] | None) -> str:
    """`8 CPUs, 31.2 GiB memory, 4 H100` from the supervisor's capacity.json."""
    from jobctl.core.units import count_text

    if not capacity:
        return "not known yet"
    parts = [count_text(capacity.get("cpus", 0), "CPU")]
    if capacity.get("memory_mib") is not None:
        mib = capacity["memory_mib"]
        parts.append(f"{mib / 1024:.1f} GiB memory" if mib >= 1024 else f"{mib} MiB memory")
    parts += [f"{count} {name}" for name, count in (capacity.get("accelerators") or {}).items()]
    return ", ".join(parts)


def supervisor_start(service: Service) -> None:
    if not service.wake_supervisor(start=True):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _supervisor_info(service) is None:
            time.sleep(0.05)
    info = _supervisor_info(service)
    console(stderr=True).print(
        f"supervisor running: pid {info['pid']}"
        if info
        else f"supervisor did not start; see {service.paths.supervisor_log}",
        markup=False,
    )


def supervisor_stop(service: Service) -> int:
    import psutil

    info = _supervisor_info(service)
    if info is None:
        console(stderr=True).print("supervisor not running", markup=False)
        return 0
    proc = info["proc"]
    proc.terminate()

    def stopped() -> bool:  # a zombie (someone's unreaped child) has stopped too
        try:
            return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 10
    while not stopped():
        if time.monotonic() > deadline:
            console(stderr=True).print(f"supervisor {info['pid']} did not stop within 10 s", markup=False)
            return 1
        time.sleep(0.05)
    console(stderr=True).print(f"supervisor {info['pid']} stopped; running jobs keep running", markup=False)
    return 0


def _backend_for(row: Job, service: Service) -> Any:
    from jobctl.engine.backends import backend_for

    return backend_for(row, service)
