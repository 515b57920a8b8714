"""`jobctl queue set|pause|resume|list` and `jobctl update` (SPEC section 9)."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from jobctl.cli.commands import check_selectors, open_service
from jobctl.errors import UsageError

queue_app = typer.Typer(help="Named queues: caps on how many of their jobs run at once, pause and resume.")

NameArg = Annotated[str, typer.Argument(help="A queue name (letters, digits, '.', '_', '-').")]


def _name(name: str, command: str) -> str:
    from jobctl.app.queueing import queue_option

    return queue_option(name, where=f"queue {command}") or name


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _count(option: str, text: Optional[str], parse: Any) -> Any:
    """A cap given on the command line: a number >= its minimum, or `none` to remove it."""
    if text is None:
        return ...
    if text.strip().lower() in ("none", "unlimited", "-"):
        return None
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None:
        raise UsageError(f'{option}: expected a whole number of at least 1, or "none" to remove the cap, got "{text}"')
    return value


def _positive_int(text: str) -> Optional[int]:
    text = text.strip()
    return int(text) if text.isdigit() and 1 <= int(text) <= 1_000_000 else None


def _natural(text: str) -> Optional[int]:
    text = text.strip()
    return int(text) if text.isdigit() and int(text) <= 1_000_000 else None


def _cpus(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value <= 100_000 else None


@queue_app.command("set", context_settings={"ignore_unknown_options": True})  # `--max-running -1`: a value
def queue_set(
    name: NameArg,
    max_running: Annotated[
        Optional[str], typer.Option("--max-running", help='Jobs of this queue that may run at once ("none": no cap).')
    ] = None,
    cpus: Annotated[Optional[str], typer.Option(help='CPUs its running jobs may hold in all ("none": no cap).')] = None,
    gpus: Annotated[
        Optional[str], typer.Option(help='Accelerators its running jobs may hold ("none": no cap).')
    ] = None,
) -> None:
    """Cap a queue.

    Example: jobctl queue set gpu --max-running 1
    """

    name = _name(name, "set")
    changes = {}
    for key, option, text, parse in (
        ("max_running", "--max-running", max_running, _positive_int),
        ("cpus", "--cpus", cpus, _cpus),
        ("gpus", "--gpus", gpus, _natural),
    ):
        value = _count(option, text, parse)
        if value is not ...:
            changes[key] = value
    if not changes:
        raise UsageError("queue set: give --max-running, --cpus or --gpus (see 'jobctl queue set --help')")
    open_service().set_queue(name, changes, start=False)
    said = ", ".join(f"{k.replace('_', '-')} {'none' if v is None else f'{v:g}'}" for k, v in changes.items())
    _err(f"queue {name}: {said}")


def _pause(name: str, paused: bool) -> None:

    name = _name(name, "pause" if paused else "resume")
    service = open_service()
    before = {q.name: q for q in service.queue_rows()}.get(name)
    if before is None and not paused:  # nothing to resume: do not record a queue for a typo
        _err(f"queue {name} is not paused (no job is in it and it has no cap)")
        return
    service.set_queue(name, {"paused": int(paused)}, start=not paused)
    if not paused:
        _err(f"queue {name} resumed" if before is not None and before.paused else f"queue {name} is not paused")
    elif before is None:  # queues are made by use: say so, in case the name was mistyped
        _err(f"queue {name} paused (a new queue: no job is in it yet); no new job will start there")
    else:
        _err(f"queue {name} paused: no new job starts there; running ones go on")


@queue_app.command("pause")
def queue_pause(name: NameArg) -> None:
    """Start no more jobs of a queue (running ones go on).

    Example: jobctl queue pause default
    """
    _pause(name, True)


@queue_app.command("resume")
def queue_resume(name: NameArg) -> None:
    """Undo `queue pause`.

    Example: jobctl queue resume default
    """
    _pause(name, False)


@queue_app.command("list")
def queue_list(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False) -> None:
    """Every queue: running and waiting jobs, its cap, paused or not.

    Example: jobctl queue list --json
    """
    from jobctl.app.queueing import queue_doc
    from jobctl.cli.output import console, dump
    from jobctl.core.units import count_text

    found = open_service().queue_rows()
    if as_json:
        dump([queue_doc(q) for q in found])
        return
    rows = [("QUEUE", "RUNNING", "WAITING", "MAX RUNNING", "PAUSED")]
    for q in found:
        cap = "-" if q.max_running is None else str(q.max_running)
        extra = [
            count_text(q.cpus, "CPU") if q.cpus is not None else "",
            count_text(q.gpus, "GPU") if q.gpus is not None else "",
        ]
        extra = [e for e in extra if e]
        if extra:
            cap += f" ({', '.join(extra)})"
        rows.append((q.name, str(q.running), str(q.waiting), cap, "yes" if q.paused else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = console()
    for r in rows:
        out.print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), markup=False, highlight=False)


def update(
    jobs: Annotated[Optional[list[str]], typer.Argument(help="Job IDs, names or globs.", show_default=False)] = None,
    priority: Annotated[
        Optional[int], typer.Option(help="Higher runs first (also for running jobs).", min=-1_000_000, max=1_000_000)
    ] = None,
    queue: Annotated[Optional[str], typer.Option(help="Move waiting jobs to this queue.")] = None,
    timeout: Annotated[
        Optional[str], typer.Option(help='Time limit per attempt, e.g. "2h" ("none": no limit).')
    ] = None,
    retries: Annotated[Optional[int], typer.Option(help="Automatic retries after a failure.", min=0, max=1000)] = None,
    label: Annotated[Optional[list[str]], typer.Option(help="Set label k=v (k= removes it). Repeatable.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every unfinished job.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Change jobs that have not finished: priority (also of running ones), queue, timeout, retries, labels.

    Example: jobctl update 7 --priority 10
    """
    from jobctl.app import control
    from jobctl.app import queueing as app_queueing
    from jobctl.cli import output
    from jobctl.core.units import parse_duration

    check_selectors(jobs, all_jobs)
    changes: dict[str, Any] = {}
    if priority is not None:
        changes["priority"] = priority
    if queue is not None:
        changes["queue"] = app_queueing.queue_option(queue)
    if timeout is not None:
        if timeout.strip().lower() == "none":
            changes["timeout"] = None
        else:
            try:
                changes["timeout"] = parse_duration(timeout)
            except ValueError as exc:
                raise UsageError(f"--timeout: {exc}") from None
    if retries is not None:
        changes["retries"] = retries
    if label:
        labels = {}
        for item in label:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--label: expected k=v, got {item!r}")
            labels[key] = value
        changes["labels"] = labels
    if not changes:
        raise UsageError("update: give at least one of --priority, --queue, --timeout, --retries, --label")
    svc = open_service()
    if getattr(svc, "remote", False):  # the owner's jobs only (or an admin's): the supervisor checks
        results = svc.bulk("update", jobs or [], all_jobs, changes=changes)
    else:
        results = control.bulk(svc, jobs or [], all_jobs, "update", lambda r: app_queueing.update(svc, r, changes))
    raise typer.Exit(output.report(results, as_json, nothing="update"))
