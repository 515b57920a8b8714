"""The four pages as HTML. Jobs and Job are shells that static/app.js fills from /api/ (live);
Timeline and Usage carry their SVG charts, drawn server-side. Every value is escaped here;
app.js builds the DOM with textContent only."""

from __future__ import annotations

from html import escape

HERE = ' class="here"'
NAV = (("jobs", "/", "Jobs"), ("timeline", "/timeline", "Timeline"), ("usage", "/usage", "Usage"))


def page(
    page_name: str,
    title: str,
    body: str,
    *,
    token: str,
    allow_control: bool,
    user: str,
    extra: dict[str, str] | None = None,
) -> str:
    nav = "".join(f'<a href="{href}"{HERE if name == page_name else ""}>{label}</a>' for name, href, label in NAV)
    data = "".join(f' data-{k}="{escape(v)}"' for k, v in (extra or {}).items())
    mode = "control allowed" if allow_control else "read-only"
    return f"""<!doctype html>
<html lang="en"><head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="jobctl-token" content="{escape(token)}">
<meta name="jobctl-control" content="{"1" if allow_control else "0"}">
<title>{escape(title)} · jobctl</title>
<link rel="stylesheet" href="/static/app.css">
<link rel="stylesheet" href="/static/states.css">
</head>
<body data-page="{page_name}"{data}>
<header><span class="brand">jobctl</span><nav>{nav}</nav>
<span class="who">User: {escape(user)} · {mode}</span></header>
<main>
{body}
</main>
<script src="/static/app.js"></script>
</body></html>
"""


def jobs_body() -> str:
    from jobctl.cli.views import COLUMNS

    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    return f"""<h1>Jobs</h1>
<form id="filters" class="filters" autocomplete="off">
  <label>State <select name="state" id="f-state"><option value="">any</option></select></label>
  <label>Label <input name="label" id="f-label" placeholder="k=v" size="14"></label>
  <label>Queue <select name="queue" id="f-queue"><option value="">any</option></select></label>
  <label>User <select name="user" id="f-user"><option value="">any</option></select></label>
  <label>Show <select name="all" id="f-all"><option value="">unfinished + 20 newest finished</option>
    <option value="1">every job</option></select></label>
</form>
<p id="error" class="error" hidden></p>
<table id="jobs" class="jobs"><thead><tr>{head}</tr></thead><tbody></tbody></table>
<p id="more" class="note" hidden></p>
<p class="updated">Updated <span id="updated">-</span> (every second)</p>
"""


def job_body(job_id: int, allow_control: bool) -> str:
    controls = ""
    if allow_control:
        controls = (
            '<div class="controls" id="controls">'
            + "".join(f'<button type="button" data-verb="{v}">{v}</button>' for v in ("stop", "start", "kill", "retry"))
            + '<span id="control-result" class="result"></span></div>'
        )
    return f"""<h1>Job {job_id} <span id="job-name" class="name"></span></h1>
<p id="error" class="error" hidden></p>
<p class="status-line"><span id="job-status" class="status"></span></p>
{controls}
<section><h2>Describe</h2><dl id="summary" class="summary"></dl></section>
<section><h2>Usage</h2><table id="usage" class="small"><thead><tr><th>ATTEMPT</th><th>STARTED</th>
<th>ENDED</th><th>WALL</th><th>OUTCOME</th><th>EXIT</th></tr></thead><tbody></tbody></table></section>
<section><h2>Events</h2><table id="events" class="small"><thead><tr><th>TIME</th><th>FROM</th><th>TO</th>
<th>BY</th><th>REASON</th><th>MESSAGE</th></tr></thead><tbody></tbody></table></section>
<section><h2>Logs</h2>
<div class="log-controls"><label>Attempt <select id="log-attempt"></select></label>
<span id="log-ranks" class="ranks"></span><span id="log-state" class="log-state"></span></div>
<pre id="log" class="log"></pre></section>
"""


def timeline_body(svg: str, range_name: str, lanes: int, bars: int) -> str:
    links = " ".join(
        f'<a href="/timeline?range={r}"{HERE if r == range_name else ""}>last {"5 minutes" if r == "5m" else r}</a>'
        for r in ("5m", "hour", "day", "week")
    )
    return f"""<h1>Timeline</h1>
<p class="zoom">{links} · {lanes} lanes, {bars} bars · hover a bar for the job, click it to open the job</p>
<div class="chart-box">{svg}</div>
<p class="legend">Colours as STATUS in <code>jobctl status</code>; a job's earlier attempts are coloured by how they
ended (preempted or released: SUSPENDED, failed: FAILED), its last one by the job's state.</p>
"""


def usage_body(charts: str, since: str) -> str:
    links = " ".join(
        f'<a href="/usage?since={s}"{HERE if s == since else ""}>last {s}</a>' for s in ("1d", "7d", "30d")
    )
    return f"""<h1>Usage</h1>
<p class="zoom">{links}</p>
{charts}
"""


def not_found(what: str) -> str:
    return f'<h1>Not found</h1><p class="error">{escape(what)}</p>'
