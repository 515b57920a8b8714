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

from .errors import JobFileError, UsageError
from .models import Dependency, JobSpec, LoadedFile
from .units import (ACCELERATOR_EXPECTED, ACCELERATOR_NAME_RE, accelerator_count, describe_value,
                    parse_accelerator, parse_cpus, parse_duration, parse_gpus_option, parse_memory, quote)
from .yamlnodes import NodeReader, compose_documents, describe, is_null, join_key, read_source

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NUM_NODES = 1024
MAX_RETRIES = 1000
MAX_JOB_ID = 2**63 - 1
# Whole-number keys and their bounds.
INT_RANGES = {"num_nodes": (1, MAX_NUM_NODES), "priority": (-1_000_000, 1_000_000),
              "retries": (0, MAX_RETRIES)}
BACKENDS = ("local", "slurm")
DEPENDENCY_CONDITIONS = ("ok", "any", "failed")

TOP_KEYS = ("name", "workdir", "num_nodes", "resources", "envs", "secrets", "setup", "run",
            "file_mounts", "priority", "depends_on", "retries", "timeout", "queue_timeout",
            "labels", "backend")
RESOURCE_KEYS = ("cpus", "memory", "accelerators", "labels", "job_config")
JOB_CONFIG_KEYS = ("max_restarts", "completions")
DEPENDENCY_KEYS = ("job", "condition")
# Accepted with a warning: they only mean something on a cloud or on Kubernetes.
IGNORED_TOP_KEYS = ("service", "config", "experimental", "volumes", "event_callback", "docker",
                    "image_id")
IGNORED_RESOURCE_KEYS = ("cloud", "infra", "region", "zone", "image_id", "disk_size", "disk_tier",
                         "use_spot", "spot_recovery", "job_recovery", "ports", "instance_type",
                         "network_tier", "any_of", "ordered", "accelerator_args", "autostop")
_IGNORED = "ignored (only meaningful on a cloud or Kubernetes)"
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
            raise reader.error(document, None, "expected a mapping of job keys (name, resources, "
                                               f"run, ...), got {describe(document)}")
    entries = [reader.items(document, "") for document in documents]
    loaded = LoadedFile(path=path, tasks=[])
    if len(entries) > 1 and [name for name, _, _ in entries[0]] == ["name"]:
        loaded.pipeline_name = _name(reader, entries[0][0][2], "name")
        documents, entries = documents[1:], entries[1:]
    if not documents:
        raise reader.error(None, None, "no job in this file (a job needs at least a run command)")
    stem = default_name(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    for i, (document, items) in enumerate(zip(documents, entries), start=1):
        fallback = stem if len(documents) == 1 else f"{stem}-{i}"[:128]
        builder = _TaskBuilder(reader, base_dir, fallback, loaded.warnings)
        spec = builder.build(document, items)
        spec.source = os.path.abspath(path)
        loaded.tasks.append(spec)
    return loaded


class _TaskBuilder:
    """Validates one task document into a JobSpec."""

    def __init__(self, reader: NodeReader, base_dir: str, fallback_name: str, warnings: list[str]):
        self.r = reader
        self.warnings = warnings
        self.spec = JobSpec(name=fallback_name, run="", workdir=base_dir)
        self.base_dir = base_dir
        self.resource_labels: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.env_origin: dict[str, str] = {}  # env name -> "envs" or "secrets"
        self.max_restarts: int | None = None

    def build(self, document: Node, items: list[tuple[str, Node, Node]]) -> JobSpec:
        handlers: dict[str, Callable[[Node, str], None]] = {
            "name": self._set_name, "workdir": self._workdir, "resources": self._resources,
            "envs": self._environment, "secrets": self._environment, "setup": self._setup,
            "run": self._run, "file_mounts": self._file_mounts, "depends_on": self._depends_on,
            "timeout": self._duration, "queue_timeout": self._duration, "labels": self._top_labels,
            "backend": self._backend, "num_nodes": self._bounded_int, "priority": self._bounded_int,
            "retries": self._bounded_int,
        }
        for name, key_node, value in items:
            if name in IGNORED_TOP_KEYS:
                self._ignore(key_node, value, name)
            elif name in handlers:
                handlers[name](value, name)
            else:
                raise _unknown(self.r, key_node, name, "", TOP_KEYS + IGNORED_TOP_KEYS)
        spec = self.spec
        names = {name for name, _, _ in items}
        if "run" not in names:
            raise self.r.error(document, "run", "missing (every job needs a run command)")
        if "retries" not in names and self.max_restarts is not None:
            spec.retries = self.max_restarts  # Konduktor's spelling, used when ours is absent
        spec.labels = {**self.resource_labels, **self.labels}
        return spec

    # -- helpers --------------------------------------------------------------------------------

    def _ignore(self, key_node: Node, value: Node, key: str) -> None:
        self.spec.ignored[key] = self.r.data(value, key, json_safe=True)
        self.warnings.append(self.r.warning(key_node, key, _IGNORED))

    def _int(self, node: Node, key: str, low: int, high: int) -> int:
        value = self.r.data(node, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.r.error(node, key, f"expected a whole number, got {describe(node)}")
        if not low <= value <= high:
            raise self.r.error(node, key, f"expected a whole number from {low} to {high}, "
                                          f"got {describe(node)}")
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
        if is_null(node):
            return
        raw = self._string(node, key, "a folder path")
        path = os.path.abspath(os.path.join(self.base_dir, os.path.expanduser(raw)))
        if not os.path.exists(path):
            raise self.r.error(node, key, f"{quote(path, 200)} does not exist")
        if not os.path.isdir(path):
            raise self.r.error(node, key, f"{quote(path, 200)} is not a directory")
        self.spec.workdir = path

    def _bounded_int(self, node: Node, key: str) -> None:  # num_nodes, priority, retries
        setattr(self.spec, key, self._int(node, key, *INT_RANGES[key]))

    def _duration(self, node: Node, key: str) -> None:  # timeout, queue_timeout
        setattr(self.spec, key, self._unit(parse_duration, node, key))

    def _setup(self, node: Node, key: str) -> None:
        if not is_null(node):
            self.spec.setup = self._string(node, key, "a shell command") or None

    def _run(self, node: Node, key: str) -> None:
        run = self._string(node, key, "a shell command")
        if not run.strip():
            raise self.r.error(node, key, "expected a shell command, got an empty string")
        self.spec.run = run

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
        for name, key_node, value in self.r.items(node, key):
            env_key = join_key(key, name)
            if not _ENV_NAME_RE.fullmatch(name):
                raise self.r.error(key_node, env_key, "not a valid environment variable name "
                                                      "(letters, digits and _, not starting with a digit)")
            if name in self.env_origin:
                raise self.r.error(key_node, env_key, f"also set in {self.env_origin[name]}")
            self.env_origin[name] = key
            self.spec.envs[name] = self._scalar_text(value, env_key, "a string, a number, "
                                                                     "true/false or null", None)
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
            fields = {name: (key_node, value)
                      for name, key_node, value in self.r.items(entry, entry_key)}
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
                    raise self.r.error(value, condition_key,
                                       f"expected ok, any or failed, got {quote(condition)}")
                dependency.condition = condition
            self.spec.depends_on.append(dependency)

    def _job_ref(self, node: Node, key: str) -> str | int:
        value = self.r.data(node, key)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_JOB_ID:
            return value
        if isinstance(value, str) and NAME_RE.fullmatch(value):
            return value
        raise self.r.error(node, key, f"expected a job name or ID, got {describe(node)}")

    # -- resources ------------------------------------------------------------------------------

    def _resources(self, node: Node, key: str) -> None:
        for name, key_node, value in self.r.items(node, key):
            sub_key = join_key(key, name)
            if name in IGNORED_RESOURCE_KEYS:
                self._ignore(key_node, value, sub_key)
            elif name == "cpus":
                self.spec.cpus = self._unit(parse_cpus, value, sub_key)
            elif name == "memory":
                self.spec.memory_mib = self._unit(lambda v: parse_memory(v, where_key=sub_key),
                                                  value, sub_key)
            elif name == "accelerators":
                self.spec.accelerators = _accelerators(self.r, value, sub_key)
            elif name == "labels":
                self.resource_labels = self._labels(value, sub_key)
            elif name == "job_config":
                self._job_config(value, sub_key)
            else:
                raise _unknown(self.r, key_node, name, key, RESOURCE_KEYS + IGNORED_RESOURCE_KEYS)

    def _job_config(self, node: Node, key: str) -> None:
        for name, key_node, value in self.r.items(node, key):
            sub_key = join_key(key, name)
            if name == "max_restarts":
                if not is_null(value):
                    self.max_restarts = self._int(value, sub_key, 0, MAX_RETRIES)
            elif name == "completions":
                if not is_null(value) and self._int(value, sub_key, 1, MAX_RETRIES) != 1:
                    self.spec.ignored[sub_key] = self.r.data(value, sub_key)
                    self.warnings.append(self.r.warning(key_node, sub_key, "ignored (a job runs to "
                                                        "completion once; use --array for copies)"))
            else:
                raise _unknown(self.r, key_node, name, key, JOB_CONFIG_KEYS)


def _unknown(reader: NodeReader, key_node: Node, name: str, parent: str,
             valid: tuple[str, ...]) -> JobFileError:
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


# -- accelerators ---------------------------------------------------------------------------------

def _accelerators(reader: NodeReader, node: Node, key: str) -> list[list[Any]]:
    """Every SkyPilot form, as alternatives [[name, count], ...] in the order written."""
    found: list[tuple[str, int]] = []
    if isinstance(node, SequenceNode):
        for i, item in enumerate(reader.sequence(node, key)):
            item_key = f"{key}[{i}]"
            if isinstance(item, MappingNode):
                found += _accelerator_mapping(reader, item, item_key)
            else:
                found.append(_accelerator_text(reader, item, item_key))
    elif isinstance(node, MappingNode):
        found = _accelerator_mapping(reader, node, key)
    elif not is_null(node):
        found.append(_accelerator_text(reader, node, key))
    unique = list(dict.fromkeys(found))  # the same alternative twice adds nothing
    return [[name, count] for name, count in unique]


def _accelerator_text(reader: NodeReader, node: Node, key: str) -> tuple[str, int]:
    value = reader.data(node, key)
    if not isinstance(value, str):
        raise reader.error(node, key, f"{ACCELERATOR_EXPECTED}, got {describe(node)}")
    try:
        return parse_accelerator(value)
    except ValueError as e:
        raise reader.error(node, key, str(e)) from None


def _accelerator_mapping(reader: NodeReader, node: Node, key: str) -> list[tuple[str, int]]:
    """{A100: 8}, several keys as alternatives, and the set form {H100:8, A100:8} (null values)."""
    found = []
    for name, key_node, value in reader.items(node, key):
        sub_key = join_key(key, name)
        if is_null(value):  # set form: the count is in the key, or 1
            found.append(_accelerator_text(reader, key_node, sub_key))
            continue
        if not ACCELERATOR_NAME_RE.fullmatch(name):
            raise reader.error(key_node, sub_key, 'expected an accelerator name such as "H100" (the '
                                                  f"count goes in the value), got {quote(name)}")
        try:
            found.append((name, accelerator_count(reader.data(value, sub_key))))
        except ValueError as e:
            raise reader.error(value, sub_key, str(e)) from None
    return found


# -- launch-time overrides ------------------------------------------------------------------------

def apply_overrides(spec: JobSpec, *, cpus: Any = None, memory: Any = None, gpus: Any = None,
                    num_nodes: Any = None, name: Any = None) -> JobSpec:
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
        raise ValueError(f"expected a whole number from 1 to {MAX_NUM_NODES}, "
                         f"got {describe_value(value)}")
    return value
