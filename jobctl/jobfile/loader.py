"""Loading and validating job files (SPEC section 2), and the launch-time resource overrides.

`load_jobfile` turns a Konduktor/SkyPilot task YAML (one document, or a pipeline of several) into
JobSpecs. Every problem is a JobFileError naming the file, the line and the dotted key; keys that
only make sense on a cloud or Kubernetes are kept in `spec.ignored` with a one-line warning.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from jobctl.core.models import Dependency, JobSpec, LoadedFile
from jobctl.core.units import (
    ACCELERATOR_EXPECTED,
    ACCELERATOR_NAME_RE,
    FractionalAccelerators,
    accelerator_count,
    describe_value,
    parse_accelerator,
    parse_cpus,
    parse_duration,
    parse_gpus_option,
    parse_memory,
    quote,
)
from jobctl.errors import JobFileError, UsageError
from jobctl.jobfile.yamlnodes import NodeReader, compose_documents, describe, is_null, join_key, read_source

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NUM_NODES = 1024
MAX_RETRIES = 1000
MAX_JOB_ID = 2**63 - 1
# Whole-number keys and their bounds.
INT_RANGES = {"num_nodes": (1, MAX_NUM_NODES), "priority": (-1_000_000, 1_000_000), "retries": (0, MAX_RETRIES)}
BACKENDS = ("local", "slurm")
DEPENDENCY_CONDITIONS = ("ok", "any", "failed")

TOP_KEYS = (
    "name",
    "workdir",
    "num_nodes",
    "resources",
    "envs",
    "secrets",
    "setup",
    "run",
    "file_mounts",
    "priority",
    "depends_on",
    "retries",
    "timeout",
    "queue_timeout",
    "labels",
    "backend",
    "queue",
    "start_at",
    "signal",
    "notify",
)
NOTIFY_KEYS = ("on", "command", "webhook")
RESOURCE_KEYS = ("cpus", "memory", "accelerators", "labels", "job_config")
JOB_CONFIG_KEYS = ("max_restarts", "completions")
DEPENDENCY_KEYS = ("job", "condition")
GIT_WORKDIR_KEYS = ("url", "ref")

# The task files of SkyPilot and Konduktor, old schema and new. The keys come from:
# - SkyPilot, github.com/skypilot-org/skypilot, sky/utils/schemas.py: get_task_schema() (task keys),
#   _get_single_resources_schema() and get_resources_schema() (resources, with any_of/ordered);
#   older releases: resources.spot_recovery (now job_recovery), resources.candidates (SkyPilot
#   Benchmark, the old any_of), resources.use_queued_resource (schemas.py at commit 042eba0) and the
#   task key `experimental`; sky/resources.py
#   RESOURCE_CONFIG_ALIASES (gpus = accelerators); sky/utils/dag_utils.py: the header document of a
#   pipeline or job group (name, execution, primary_tasks, termination_delay).
# - Konduktor, github.com/Trainy-ai/konduktor, konduktor/utils/schemas.py (a subset of SkyPilot's)
#   and its task schema docs: resources.job_config, resources.labels and `serving`.
# Each key is either read here (a handler below) or accepted with one warning line that says why
# the local backend does not honour it (the value is kept in `spec.ignored`).
_CLOUD = "ignored (only meaningful on a cloud or Kubernetes)"
_SERVICE = "ignored (replicas behind an endpoint; jobctl runs batch jobs)"
_SKY_CONFIG = "ignored (SkyPilot/Konduktor settings, not a job's)"
_SKY_INTERNAL = "ignored (internal to SkyPilot)"
SCHEMA_TOP_KEYS: dict[str, str] = {
    "service": _SERVICE,
    "pool": "ignored (a pool of SkyPilot workers; jobctl queues jobs itself)",
    "serving": _SERVICE,
    "config": _SKY_CONFIG,
    "experimental": _SKY_CONFIG,
    "volumes": _CLOUD,
    "volume_mounts": _CLOUD,
    "docker": _CLOUD,
    "image_id": _CLOUD,
    "managed_secrets": "ignored (managed secrets live in a SkyPilot API server; use --env)",
    "inputs": "ignored (SkyPilot's data size hints)",
    "outputs": "ignored (SkyPilot's data size hints)",
    "file_mounts_mapping": _SKY_INTERNAL,
    "api_server_access": _SKY_INTERNAL,
    "_metadata": _SKY_INTERNAL,
    # header keys of a job group (read in the first document; see load_jobfile)
    "primary_tasks": "ignored (every task of a job group runs to its own end)",
    "termination_delay": "ignored (every task of a job group runs to its own end)",
    "placement": _CLOUD,  # job-group header of dag_utils.py at commit 1d36858 (SAME_INFRA)
}
SCHEMA_RESOURCE_KEYS: dict[str, str] = {
    **{
        key: _CLOUD
        for key in (
            "cloud",
            "region",
            "zone",
            "infra",
            "instance_type",
            "use_spot",
            "use_queued_resource",
            "volumes",
            "disk_size",
            "ephemeral_storage",
            "disk_tier",
            "network_tier",
            "local_disk",
            "max_hourly_cost",
            "ports",
            "image_id",
            "accelerator_args",
            "priority_class",
            "_no_missing_accel_warnings",
            "_docker_login_config",
            "_is_image_managed",
            "_requires_fuse",
            "_cluster_config_overrides",
        )
    },
    "autostop": "ignored (it stops idle clusters; a local job ends when its command does)",
}
# Read by handlers (not only warned about): alternatives, recovery, priority, the gpus alias.
ALTERNATIVE_KEYS = ("any_of", "ordered", "candidates")
RECOVERY_KEYS = ("job_recovery", "spot_recovery")
HEADER_KEYS = ("name", "execution", "primary_tasks", "termination_delay", "placement")
EXECUTIONS = ("serial", "parallel")
SKY_PRIORITY = (-1000, 1000)  # sky/skylet/constants.py MIN_PRIORITY, MAX_PRIORITY
ALL_TOP_KEYS = TOP_KEYS + tuple(SCHEMA_TOP_KEYS) + ("execution", "event_callback")
ALL_RESOURCE_KEYS = (
    RESOURCE_KEYS + tuple(SCHEMA_RESOURCE_KEYS) + ALTERNATIVE_KEYS + RECOVERY_KEYS + ("priority", "gpus")
)
_NAME_PROBLEM = "expected letters, digits, '.', '_' and '-' starting with a letter or digit (at most 128)"


def default_name(path: str) -> str:
    """A valid job name from a file name: `train job.yaml` -> `train-job`."""
    stem = os.path.basename(path)
    stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip("._-")[:128]
    return name or "job"


def load_jobfile(path: str, text: str | bytes | None = None) -> LoadedFile:
    """Load and validate a job file (read from `path` unless `text` is given).

    Several YAML documents make a pipeline: an optional first document with only `name` (the
    pipeline's name), then the tasks, which get `<stem>-<i>` when they have no name. Dependencies
    between pipeline tasks are not added here.
    """
    source = read_source(path, text)
    reader = NodeReader(path)
    documents = compose_documents(path, source)
    for document in documents:
        if not isinstance(document, MappingNode):
            raise reader.error(
                document, None, f"expected a mapping of job keys (name, resources, run, ...), got {describe(document)}"
            )
    entries = [reader.items(document, "") for document in documents]
    loaded = LoadedFile(path=path, tasks=[])
    header = _header(entries[0]) if entries else None
    bodies: list[Node | None] = list(documents)
    if header is not None and (len(entries) > 1 or set(header) - {"name"}):
        _read_header(reader, header, loaded)
        bodies, entries = bodies[1:], entries[1:]
        if not bodies:  # SkyPilot: a file with only a header is one task with nothing to run
            bodies, entries = [None], [[]]
    if not bodies:
        raise reader.error(None, None, "no job in this file (a job needs at least a run command)")
    stem = default_name(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    for i, (body, items) in enumerate(zip(bodies, entries), start=1):
        fallback = stem if len(bodies) == 1 else f"{stem}-{i}"[:128]
        if body is None and loaded.pipeline_name:
            fallback = loaded.pipeline_name
        builder = _TaskBuilder(reader, base_dir, fallback, loaded.warnings, loaded.problems)
        spec = builder.build(body, items)
        spec.source = os.path.abspath(path)
        loaded.tasks.append(spec)
    return loaded


def _header(items: list[tuple[str, Node, Node]]) -> dict[str, tuple[Node, Node]] | None:
    """The first document's entries when it is a pipeline or job-group header, else None."""
    names = [name for name, _, _ in items]
    if not names or not set(names) <= set(HEADER_KEYS):
        return None
    return {name: (key_node, value) for name, key_node, value in items}


def _read_header(reader: NodeReader, header: dict[str, tuple[Node, Node]], loaded: LoadedFile) -> None:
    if "name" in header and not is_null(header["name"][1]):
        loaded.pipeline_name = _name(reader, header["name"][1], "name")
    if "execution" in header and not is_null(header["execution"][1]):
        node = header["execution"][1]
        value = reader.data(node, "execution")
        if value not in EXECUTIONS:
            raise reader.error(node, "execution", f"expected serial or parallel, got {describe(node)}")
        loaded.parallel = value == "parallel"
    for key in ("primary_tasks", "termination_delay", "placement"):
        if key in header and not is_null(header[key][1]):
            reader.data(header[key][1], key)  # refuses unsupported tags and alias bombs
            loaded.warnings.append(reader.warning(header[key][0], key, SCHEMA_TOP_KEYS[key]))


class _TaskBuilder:
    """Validates one task document into a JobSpec."""

    def __init__(self, reader: NodeReader, base_dir: str, fallback_name: str, warnings: list[str], problems: list[str]):
        self.r = reader
        self.warnings = warnings
        self.problems = problems  # what a real launch refuses (a dry run only warns)
        self.spec = JobSpec(name=fallback_name, run="", workdir=base_dir)
        self.base_dir = base_dir
        self.resource_labels: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.env_origin: dict[str, str] = {}  # env name -> "envs" or "secrets"
        self.max_restarts: int | None = None
        self.recovery_restarts: int | None = None  # resources.job_recovery.max_restarts_on_errors
        self.sky_priority: int | None = None  # resources.priority
        self.alternatives: list[list[list[Any]] | None] | None = None  # any_of/ordered/candidates

    def build(self, document: Node | None, items: list[tuple[str, Node, Node]]) -> JobSpec:
        handlers: dict[str, Callable[[Node, str], None]] = {
            "name": self._set_name,
            "workdir": self._workdir,
            "resources": self._resources,
            "envs": self._environment,
            "secrets": self._environment,
            "setup": self._setup,
            "run": self._run,
            "file_mounts": self._file_mounts,
            "depends_on": self._depends_on,
            "timeout": self._duration,
            "queue_timeout": self._duration,
            "labels": self._top_labels,
            "backend": self._backend,
            "num_nodes": self._bounded_int,
            "priority": self._bounded_int,
            "retries": self._bounded_int,
            "execution": self._execution,
            "queue": self._queueing,
            "start_at": self._queueing,
            "signal": self._queueing,
            "notify": self._notify,
            "event_callback": self._event_callback,
        }
        for name, key_node, value in items:
            if name in handlers:
                handlers[name](value, name)
            elif name in SCHEMA_TOP_KEYS:
                self._ignore(key_node, value, name, SCHEMA_TOP_KEYS[name])
            else:
                raise _unknown(self.r, key_node, name, "", ALL_TOP_KEYS)
        spec = self.spec
        names = {name for name, _, _ in items}
        if not spec.run:
            self._no_run(document, items)
        if "retries" not in names:  # Konduktor's spelling, then SkyPilot's, when ours is absent
            restarts = self.max_restarts if self.max_restarts is not None else self.recovery_restarts
            if restarts is not None:
                spec.retries = restarts
        if "priority" not in names and self.sky_priority is not None:
            spec.priority = self.sky_priority
        if self.alternatives is not None:
            spec.accelerators = _merge_alternatives(spec.accelerators, self.alternatives)
        spec.labels = {**self.resource_labels, **self.labels}
        return spec

    def _no_run(self, document: Node | None, items: list[tuple[str, Node, Node]]) -> None:
        """SkyPilot runs no command then (it only provisions): here setup runs alone, if any."""
        at = next((key_node for name, key_node, _ in items if name == "run"), document)
        if self.spec.setup:
            problem = "missing: SkyPilot would only provision; a real launch runs setup alone"
        else:
            problem = "missing: nothing to run (no run, no setup); a real launch is refused"
            self._refuse(at, "run", "missing (a job needs a run command, or at least setup)")
        if at is None:
            self.warnings.append(f"{self.r.path}: run: {problem}")
        else:
            self.warnings.append(self.r.warning(at, "run", problem))

    def _refuse(self, at: Node | None, key: str, problem: str) -> None:
        """Loads (a dry run shows the plan), but a real launch is refused with this line."""
        self.problems.append(f"{self.r.path}: {key}: {problem}" if at is None else self.r.warning(at, key, problem))

    # -- helpers --------------------------------------------------------------------------------

    def _ignore(self, key_node: Node, value: Node, key: str, why: str) -> None:
        """Accept a key the local backend does not honour: keep its value, warn once."""
        self.spec.ignored[key] = self.r.data(value, key, json_safe=True)
        if self.spec.ignored[key] is not None:  # `key:` with no value asks for nothing
            self.warnings.append(self.r.warning(key_node, key, why))

    def _int(self, node: Node, key: str, low: int, high: int) -> int:
        value = self.r.data(node, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.r.error(node, key, f"expected a whole number, got {describe(node)}")
        if not low <= value <= high:
            raise self.r.error(node, key, f"expected a whole number from {low} to {high}, got {describe(node)}")
        return value

    def _string(self, node: Node, key: str, what: str = "a string") -> str:
        value = self.r.data(node, key)
        if not isinstance(value, str):
            raise self.r.error(node, key, f"expected {what}, got {describe(node)}")
        return value

    def _unit(self, parse: Callable[[Any], Any], node: Node, key: str) -> Any:
        """None for null, else `parse` of the value, its ValueError becoming a JobFileError."""
        value = self.r.data(node, key)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as e:
            raise self.r.error(node, key, str(e)) from None

    def _scalar_text(self, node: Node, key: str, what: str, null: str | None) -> str | None:
        """A scalar as text for an env or label value: bool -> true/false, numbers as written."""
        if not isinstance(node, ScalarNode):
            raise self.r.error(node, key, f"expected {what}, got {describe(node)}")
        value = self.r.scalar(node, key)
        if value is None:
            return null
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(node.value)  # strings, and numbers as written: 1.10 stays "1.10"

    # -- top-level keys -------------------------------------------------------------------------

    def _set_name(self, node: Node, key: str) -> None:
        if not is_null(node):
            self.spec.name = _name(self.r, node, key)

    def _workdir(self, node: Node, key: str) -> None:
        """A folder (relative to the job file's), or a git repository {url, ref} cloned per attempt.

        A folder that does not exist here is only a warning: the file still loads (a dry run shows
        the plan) and a real launch refuses it (see launch.build_plan)."""
        if is_null(node):
            return
        if isinstance(node, MappingNode):
            self._git_workdir(node, key)
            return
        raw = self._string(node, key, "a folder path or {url, ref}")
        path = os.path.abspath(os.path.join(self.base_dir, os.path.expanduser(raw)))
        self.spec.workdir = path
        problem = workdir_problem(path)
        if problem:
            self.warnings.append(self.r.warning(node, key, f"{problem} (a real launch is refused)"))
            self._refuse(node, key, problem)

    def _git_workdir(self, node: Node, key: str) -> None:
        fields = {}
        for name, key_node, value in self.r.items(node, key):
            if name not in GIT_WORKDIR_KEYS:
                raise _unknown(self.r, key_node, name, key, GIT_WORKDIR_KEYS)
            fields[name] = value
        if "url" not in fields:
            raise self.r.error(node, join_key(key, "url"), "missing (the git repository to clone)")
        url_key, ref_key = join_key(key, "url"), join_key(key, "ref")
        url = self._string(fields["url"], url_key, "a git repository URL").strip()
        if not url or url.startswith("-") or not url.isprintable():
            raise self.r.error(fields["url"], url_key, f"expected a git repository URL, got {quote(url)}")
        ref = None
        if "ref" in fields and not is_null(fields["ref"]):
            ref = self._scalar_text(fields["ref"], ref_key, "a branch, tag or commit", None)
            if not ref or ref.startswith("-") or not ref.isprintable() or " " in ref:
                raise self.r.error(
                    fields["ref"], ref_key, f"expected a branch, tag or commit, got {describe(fields['ref'])}"
                )
        local = local_git_path(url)
        if local is not None and not url.startswith("file://"):
            url = local = os.path.abspath(os.path.join(self.base_dir, os.path.expanduser(local)))
        if local is not None and not os.path.exists(local):
            problem = f"{quote(local, 200)} does not exist (the git repository to clone)"
            self.warnings.append(self.r.warning(fields["url"], url_key, f"{problem}; a real launch is refused"))
            self._refuse(fields["url"], url_key, problem)
        self.spec.workdir_git = {"url": url, "ref": ref}

    def _execution(self, node: Node, key: str) -> None:
        """`execution` belongs in a job group's header; in a task it can only say serial."""
        if not is_null(node) and self.r.data(node, key) != "serial":
            raise self.r.error(
                node,
                key,
                "expected serial here (execution: parallel goes in the first "
                f"document of a job group), got {describe(node)}",
            )

    def _bounded_int(self, node: Node, key: str) -> None:  # num_nodes, priority, retries
        setattr(self.spec, key, self._int(node, key, *INT_RANGES[key]))

    def _duration(self, node: Node, key: str) -> None:  # timeout, queue_timeout
        setattr(self.spec, key, self._unit(parse_duration, node, key))

    def _queueing(self, node: Node, key: str) -> None:  # queue, start_at, signal (SPEC section 9)
        import time

        from jobctl.core import queueing

        value = self.r.data(node, key)
        if value is None:
            return
        if key == "start_at" and isinstance(node, ScalarNode) and not isinstance(value, (str, bool)):
            value = str(node.value)  # as written: YAML 1.1 reads 22:00 as a number (1320)
        if not isinstance(value, str):
            raise self.r.error(node, key, f"expected a string, got {describe(node)}")
        check = {
            "queue": queueing.check_queue,
            "start_at": lambda v: queueing.parse_start(v, time.time()),
            "signal": queueing.parse_warning,
        }[key]
        try:
            check(value)
        except ValueError as e:
            raise self.r.error(node, key, str(e)) from None
        setattr(self.spec, key, value)

    def _setup(self, node: Node, key: str) -> None:
        if not is_null(node):
            self.spec.setup = self._string(node, key, "a shell command") or None

    def _run(self, node: Node, key: str) -> None:
        if not is_null(node):  # null or blank: nothing to run (see _no_run)
            run = self._string(node, key, "a shell command")
            self.spec.run = run if run.strip() else ""

    def _backend(self, node: Node, key: str) -> None:
        if is_null(node):
            return
        backend = self._string(node, key, " or ".join(BACKENDS))
        if backend not in BACKENDS:
            raise self.r.error(node, key, f"expected {' or '.join(BACKENDS)}, got {quote(backend)}")
        self.spec.backend = backend

    def _file_mounts(self, node: Node, key: str) -> None:
        if not is_null(node) and not isinstance(node, MappingNode):
            raise self.r.error(node, key, f"expected a mapping, got {describe(node)}")
        self.spec.file_mounts = self.r.data(node, key, json_safe=True) or {}

    def _environment(self, node: Node, key: str) -> None:
        """envs or secrets: NAME -> value, null meaning "give it with --env at launch"."""
        if key == "secrets" and isinstance(node, SequenceNode):  # SkyPilot's managed secret names
            self.spec.ignored[key] = self.r.data(node, key, json_safe=True)
            self.warnings.append(self.r.warning(node, key, SCHEMA_TOP_KEYS["managed_secrets"]))
            return
        for name, key_node, value in self.r.items(node, key):
            env_key = join_key(key, name)
            if not _ENV_NAME_RE.fullmatch(name):
                raise self.r.error(
                    key_node,
                    env_key,
                    "not a valid environment variable name (letters, digits and _, not starting with a digit)",
                )
            if name in self.env_origin:
                raise self.r.error(key_node, env_key, f"also set in {self.env_origin[name]}")
            self.env_origin[name] = key
            self.spec.envs[name] = self._scalar_text(value, env_key, "a string, a number, true/false or null", None)
            if key == "secrets":
                self.spec.secrets.append(name)

    def _labels(self, node: Node, key: str) -> dict[str, str]:
        labels = {}
        for name, _, value in self.r.items(node, key):
            text = self._scalar_text(value, join_key(key, name), "a string, a number or true/false", "")
            labels[name] = text or ""  # null reads as an empty label
        return labels

    def _top_labels(self, node: Node, key: str) -> None:
        self.labels = self._labels(node, key)

    def _depends_on(self, node: Node, key: str) -> None:
        if isinstance(node, SequenceNode):
            entries = [(item, f"{key}[{i}]") for i, item in enumerate(self.r.sequence(node, key))]
        else:
            entries = [] if is_null(node) else [(node, key)]
        for entry, entry_key in entries:
            if not isinstance(entry, MappingNode):
                self.spec.depends_on.append(Dependency(self._job_ref(entry, entry_key)))
                continue
            fields = {name: (key_node, value) for name, key_node, value in self.r.items(entry, entry_key)}
            for name, (key_node, _) in fields.items():
                if name not in DEPENDENCY_KEYS:
                    raise _unknown(self.r, key_node, name, entry_key, DEPENDENCY_KEYS)
            if "job" not in fields:
                raise self.r.error(entry, join_key(entry_key, "job"), "missing (the job name or ID)")
            dependency = Dependency(self._job_ref(fields["job"][1], join_key(entry_key, "job")))
            if "condition" in fields:
                value = fields["condition"][1]
                condition_key = join_key(entry_key, "condition")
                condition = self._string(value, condition_key, ", ".join(DEPENDENCY_CONDITIONS))
                if condition not in DEPENDENCY_CONDITIONS:
                    raise self.r.error(value, condition_key, f"expected ok, any or failed, got {quote(condition)}")
                dependency.condition = condition
            self.spec.depends_on.append(dependency)

    def _job_ref(self, node: Node, key: str) -> str | int:
        value = self.r.data(node, key)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_JOB_ID:
            return value
        if isinstance(value, str) and NAME_RE.fullmatch(value):
            return value
        raise self.r.error(node, key, f"expected a job name or ID, got {describe(node)}")

    def _notify(self, node: Node, key: str) -> None:
        """`notify: {on: [FAILED], command: ..., webhook: https://...}`, or a list of such mappings."""
        from jobctl.core import notify

        if is_null(node):
            return
        entries = (
            [(item, f"{key}[{i}]") for i, item in enumerate(self.r.sequence(node, key))]
            if isinstance(node, SequenceNode)
            else [(node, key)]
        )
        for entry, entry_key in entries:
            if not isinstance(entry, MappingNode):
                raise self.r.error(
                    entry, entry_key, f"expected a mapping of on, command, webhook, got {describe(entry)}"
                )
            fields: dict[str, Node] = {}
            for name, key_node, value in self.r.items(entry, entry_key):
                if name not in NOTIFY_KEYS:
                    raise _unknown(self.r, key_node, name, entry_key, NOTIFY_KEYS)
                fields[name] = value
            on = None
            if "on" in fields and not is_null(fields["on"]):
                on = self._checked(notify.parse_states, fields["on"], join_key(entry_key, "on"))
            kinds = [k for k in notify.KINDS if k in fields and not is_null(fields[k])]
            if not kinds:
                raise self.r.error(entry, entry_key, "expected a command or a webhook to notify")
            for kind in kinds:
                check = notify.check_command if kind == "command" else notify.check_url
                value = self._checked(check, fields[kind], join_key(entry_key, kind))
                self.spec.notify.append(notify.target(kind, value, on, "job"))

    def _event_callback(self, node: Node, key: str) -> None:
        """SkyPilot's `event_callback`: a shell command, run here as a notify command at the job's end."""
        from jobctl.core import notify

        if is_null(node):
            return
        value = self._checked(notify.check_command, node, key)
        self.spec.notify.append(notify.target("command", value, None, "event_callback"))

    def _checked(self, check: Callable[[Any], Any], node: Node, key: str) -> Any:
        """`check` of the node's value; its ValueError becomes a JobFileError at the node's line."""
        value = self.r.data(node, key)
        try:
            return check(value)
        except ValueError as e:
            raise self.r.error(node, key, str(e)) from None

    # -- resources ------------------------------------------------------------------------------

    def _resources(self, node: Node, key: str) -> None:
        for name, key_node, value in self.r.items(node, key):
            sub_key = join_key(key, name)
            if name in SCHEMA_RESOURCE_KEYS:
                self._ignore(key_node, value, sub_key, SCHEMA_RESOURCE_KEYS[name])
            elif name == "cpus":
                self.spec.cpus = self._unit(parse_cpus, value, sub_key)
            elif name == "memory":
                self.spec.memory_mib = self._unit(lambda v: parse_memory(v, where_key=sub_key), value, sub_key)
            elif name in ("accelerators", "gpus"):  # gpus: SkyPilot's alias
                self.spec.accelerators = _accelerators(self.r, value, sub_key, self.warnings)
            elif name == "labels":
                self.resource_labels = self._labels(value, sub_key)
            elif name == "job_config":
                self._job_config(value, sub_key)
            elif name in ALTERNATIVE_KEYS:
                self._alternatives(key_node, value, sub_key)
            elif name in RECOVERY_KEYS:
                self._recovery(key_node, value, sub_key)
            elif name == "priority":
                if not is_null(value):
                    self.sky_priority = self._int(value, sub_key, *SKY_PRIORITY)
            else:
                raise _unknown(self.r, key_node, name, key, ALL_RESOURCE_KEYS)

    def _alternatives(self, key_node: Node, node: Node, key: str) -> None:
        """any_of / ordered / candidates: the accelerators of each entry become alternatives
        ("any one of these", in the order written); the rest of each entry is cloud placement."""
        if is_null(node):
            return
        alternatives = self.alternatives if self.alternatives is not None else []
        skipped: list[str] = []
        for i, entry in enumerate(self.r.sequence(node, key)):
            entry_key = f"{key}[{i}]"
            found = None
            for name, sub_node, value in self.r.items(entry, entry_key):
                if name in ("accelerators", "gpus"):
                    found = _accelerators(self.r, value, join_key(entry_key, name), self.warnings) or None
                elif name in ALL_RESOURCE_KEYS and name not in ALTERNATIVE_KEYS:
                    self.r.data(value, join_key(entry_key, name))  # tags and alias budget
                    if name not in skipped:
                        skipped.append(name)
                else:
                    raise _unknown(
                        self.r,
                        sub_node,
                        name,
                        entry_key,
                        tuple(k for k in ALL_RESOURCE_KEYS if k not in ALTERNATIVE_KEYS),
                    )
            alternatives.append(found)
        self.alternatives = alternatives
        if skipped:
            self.spec.ignored[key] = self.r.data(node, key, json_safe=True)
            what = ", ".join(skipped[:6]) + (", ..." if len(skipped) > 6 else "")
            self.warnings.append(
                self.r.warning(
                    key_node,
                    key,
                    f"{what} of each entry ignored (only "
                    "meaningful on a cloud or Kubernetes); accelerators "
                    "are honoured as alternatives",
                )
            )

    def _recovery(self, key_node: Node, node: Node, key: str) -> None:
        """job_recovery (spot_recovery before): max_restarts_on_errors is honoured as retries;
        strategies (FAILOVER, EAGER_NEXT_REGION) only mean something on a cloud."""
        if is_null(node):
            return
        rest = {}
        if isinstance(node, MappingNode):
            for name, _, value in self.r.items(node, key):
                if name == "max_restarts_on_errors" and not is_null(value):
                    self.recovery_restarts = self._int(value, join_key(key, name), 0, MAX_RETRIES)
                else:
                    rest[name] = self.r.data(value, join_key(key, name), json_safe=True)
            rest = {name: value for name, value in rest.items() if value is not None}
            if not rest:
                return
        else:
            rest = self.r.data(node, key, json_safe=True)
        self.spec.ignored[key] = rest
        honoured = "; max_restarts_on_errors is honoured as retries" if self.recovery_restarts is not None else ""
        self.warnings.append(
            self.r.warning(key_node, key, f"ignored (recovery from cloud preemptions; use retries){honoured}")
        )

    def _job_config(self, node: Node, key: str) -> None:
        for name, key_node, value in self.r.items(node, key):
            sub_key = join_key(key, name)
            if name == "max_restarts":
                if not is_null(value):
                    self.max_restarts = self._int(value, sub_key, 0, MAX_RETRIES)
            elif name == "completions":
                if not is_null(value) and self._int(value, sub_key, 1, MAX_RETRIES) != 1:
                    self.spec.ignored[sub_key] = self.r.data(value, sub_key)
                    self.warnings.append(
                        self.r.warning(
                            key_node, sub_key, "ignored (a job runs to completion once; use --array for copies)"
                        )
                    )
            else:
                raise _unknown(self.r, key_node, name, key, JOB_CONFIG_KEYS)


def _unknown(reader: NodeReader, key_node: Node, name: str, parent: str, valid: tuple[str, ...]) -> JobFileError:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return reader.error(key_node, join_key(parent, name), f"unknown key{hint}")


def _name(reader: NodeReader, node: Node, key: str) -> str:
    """A job or pipeline name; numbers written bare (`name: 2024`) count as their text."""
    if isinstance(node, ScalarNode) and not is_null(node):
        value = reader.scalar(node, key)
        name = value if isinstance(value, str) else str(node.value)
        if NAME_RE.fullmatch(name):
            return name
        raise reader.error(node, key, f"{_NAME_PROBLEM}, got {quote(name)}")
    raise reader.error(node, key, f"expected a name, got {describe(node)}")


def _merge_alternatives(base: list[list[Any]], alternatives: list[list[list[Any]] | None]) -> list[list[Any]]:
    """An entry without accelerators takes the task's own; if that leaves one with none at all,
    the job may run without accelerators."""
    merged: list[list[Any]] = []
    for found in alternatives or [base]:
        found = found if found is not None else base
        if not found:
            return []
        merged += [item for item in found if item not in merged]
    return merged


# -- workdir ----------------------------------------------------------------------------------------


def workdir_problem(path: str) -> str | None:
    """Why a folder cannot be a job's workdir here, or None."""
    if not os.path.exists(path):
        return f"{quote(path, 200)} does not exist here"
    if not os.path.isdir(path):
        return f"{quote(path, 200)} is not a directory"
    return None


def local_git_path(url: str) -> str | None:
    """The local path of a git URL (file://..., /path, ./path, ~/path), None for a remote one
    (https://, ssh://, git@host:path)."""
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(url).path) or "/"
    if "://" in url or re.match(r"[A-Za-z0-9._-]+(@[A-Za-z0-9._-]+)?:", url):
        return None
    return url


# -- accelerators ---------------------------------------------------------------------------------


def _accelerators(reader: NodeReader, node: Node, key: str, warnings: list[str]) -> list[list[Any]]:
    """Every SkyPilot form, as alternatives [[name, count], ...] in the order written."""
    found: list[tuple[str, int]] = []
    if isinstance(node, SequenceNode):
        for i, item in enumerate(reader.sequence(node, key)):
            item_key = f"{key}[{i}]"
            if isinstance(item, MappingNode):
                found += _accelerator_mapping(reader, item, item_key, warnings)
            else:
                found.append(_accelerator_text(reader, item, item_key, warnings))
    elif isinstance(node, MappingNode):
        found = _accelerator_mapping(reader, node, key, warnings)
    elif not is_null(node):
        found.append(_accelerator_text(reader, node, key, warnings))
    unique = list(dict.fromkeys(found))  # the same alternative twice adds nothing
    return [[name, count] for name, count in unique]


def _whole(reader: NodeReader, node: Node, key: str, warnings: list[str], fraction: FractionalAccelerators) -> int:
    """SkyPilot's fractional accelerators ("T4:0.5"): this machine hands out whole devices."""
    warnings.append(
        reader.warning(
            node,
            key,
            f"{describe(node)}: a fraction of an accelerator is reserved as {fraction.whole} whole device(s) here",
        )
    )
    return fraction.whole


def _accelerator_text(reader: NodeReader, node: Node, key: str, warnings: list[str]) -> tuple[str, int]:
    value = reader.data(node, key)
    if not isinstance(value, str):
        raise reader.error(node, key, f"{ACCELERATOR_EXPECTED}, got {describe(node)}")
    try:
        return parse_accelerator(value)
    except FractionalAccelerators as e:
        return value.strip().rpartition(":")[0].strip(), _whole(reader, node, key, warnings, e)
    except ValueError as e:
        raise reader.error(node, key, str(e)) from None


def _accelerator_mapping(reader: NodeReader, node: Node, key: str, warnings: list[str]) -> list[tuple[str, int]]:
    """{A100: 8}, several keys as alternatives, and the set form {H100:8, A100:8} (null values)."""
    found = []
    for name, key_node, value in reader.items(node, key):
        sub_key = join_key(key, name)
        if is_null(value):  # set form: the count is in the key, or 1
            found.append(_accelerator_text(reader, key_node, sub_key, warnings))
            continue
        if not ACCELERATOR_NAME_RE.fullmatch(name):
            raise reader.error(
                key_node,
                sub_key,
                f'expected an accelerator name such as "H100" (the count goes in the value), got {quote(name)}',
            )
        try:
            found.append((name, accelerator_count(reader.data(value, sub_key))))
        except FractionalAccelerators as e:
            found.append((name, _whole(reader, value, sub_key, warnings, e)))
        except ValueError as e:
            raise reader.error(value, sub_key, str(e)) from None
    return found


# -- launch-time overrides ------------------------------------------------------------------------


def apply_overrides(
    spec: JobSpec, *, cpus: Any = None, memory: Any = None, gpus: Any = None, num_nodes: Any = None, name: Any = None
) -> JobSpec:
    """A copy of `spec` with the launch options `--cpus 2`, `--memory 4GiB`, `--gpus H100:2`
    (a bare count keeps the spec's accelerator name when it has exactly one, else "GPU"; 0 drops
    them; commas separate alternatives), `--num-nodes 2` and `--name x` applied.
    Raises UsageError naming the option."""
    spec = copy.deepcopy(spec)
    if cpus is not None:
        spec.cpus = _option("--cpus", parse_cpus, cpus)
    if memory is not None:
        spec.memory_mib = _option("--memory", lambda v: parse_memory(v, where_key="--memory"), memory)
    if gpus is not None:
        spec.accelerators = _option("--gpus", lambda v: parse_gpus_option(v, spec.accelerators), gpus)
    if num_nodes is not None:
        spec.num_nodes = _option("--num-nodes", _num_nodes_option, num_nodes)
    if name is not None:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise UsageError(f"--name: {_NAME_PROBLEM}, got {describe_value(name)}")
        spec.name = name
    return spec


def _option(option: str, parse: Callable[[Any], Any], value: Any) -> Any:
    try:
        return parse(value)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _num_nodes_option(value: Any) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,9}\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NUM_NODES:
        raise ValueError(f"expected a whole number from 1 to {MAX_NUM_NODES}, got {describe_value(value)}")
    return value
