"""Job files (SPEC section 2): real SkyPilot files load, every problem names file:line: key."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobctl.core.models import Dependency, JobSpec, LoadedFile
from jobctl.errors import JobFileError, UsageError
from jobctl.jobfile.loader import apply_overrides, default_name, load_jobfile


def _fixtures_dir() -> Path:
    """shared/fixtures/skypilot beside the checkout, else $JOBCTL_FIXTURES."""
    beside = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "skypilot"
    return beside if beside.is_dir() else Path(os.environ.get("JOBCTL_FIXTURES", beside))


FIXTURES = _fixtures_dir()
FIXTURE_FILES = sorted(FIXTURES.glob("*.yaml")) if FIXTURES.is_dir() else []
needs_fixtures = pytest.mark.skipif(not FIXTURE_FILES, reason=f"no fixtures at {FIXTURES}")

Loader = Callable[[str | bytes], LoadedFile]


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Loader:
    """Write the text to ./job.yaml in a fresh folder and load it by that relative name."""
    monkeypatch.chdir(tmp_path)

    def _load(text: str | bytes) -> LoadedFile:
        Path("job.yaml").write_bytes(text.encode() if isinstance(text, str) else text)
        return load_jobfile("job.yaml")

    return _load


def error_of(load: Loader, text: str | bytes) -> str:
    with pytest.raises(JobFileError) as info:
        load(text)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    return message


# -- real files ---------------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_skypilot_fixture_loads(path: Path) -> None:
    loaded = load_jobfile(str(path))
    assert loaded.tasks
    for spec in loaded.tasks:
        assert spec.run.strip()
        assert Path(spec.source).resolve() == path.resolve()
        assert Path(spec.workdir).resolve() == path.parent.resolve()
        assert JobSpec.from_dict(spec.to_dict()) == spec
    for warning in loaded.warnings:
        assert warning.startswith(f"{path}:") and len(warning.splitlines()) == 1


def _fixture(name: str) -> LoadedFile:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"missing fixture {name}")
    return load_jobfile(str(path))


@needs_fixtures
def test_chain_dag_is_a_pipeline() -> None:
    loaded = _fixture("examples__chain_dag__2_jobs.yaml")
    assert loaded.pipeline_name == "pipeline"
    assert [t.name for t in loaded.tasks] == ["train", "eval"]
    assert loaded.tasks[0].num_nodes == 2
    assert loaded.tasks[0].accelerators == [["V100", 1]]
    assert all(t.depends_on == [] for t in loaded.tasks)  # the service links them by ID


@needs_fixtures
def test_multi_accelerators_keeps_order() -> None:
    spec = _fixture("examples__multi_accelerators.yaml").tasks[0]
    assert spec.accelerators == [["A100-40GB", 1], ["V100", 1], ["K80", 1], ["T4", 1]]


@needs_fixtures
def test_custom_image_warns() -> None:
    loaded = _fixture("examples__custom_image.yaml")
    path = FIXTURES / "examples__custom_image.yaml"
    assert f"{path}:6: resources.image_id: ignored (only meaningful on a cloud or Kubernetes)" in loaded.warnings
    assert f"{path}:2: resources.cloud: ignored (only meaningful on a cloud or Kubernetes)" in loaded.warnings
    assert loaded.tasks[0].ignored["resources.image_id"] == "ami-062ddd90fb6f8267a"
    assert loaded.tasks[0].accelerators == [["V100", 1]]


@needs_fixtures
def test_kimi_k2() -> None:
    spec = _fixture("llm__kimi-k2__kimi-k2.sky.yaml").tasks[0]
    assert spec.cpus == 100
    assert spec.memory_mib == 1000 * 1024
    assert spec.accelerators == [["H100", 8]]
    assert spec.num_nodes == 2
    assert spec.envs == {"MODEL_NAME": "moonshotai/Kimi-K2-Instruct", "HF_TOKEN": None}
    assert spec.secrets == ["HF_TOKEN"]
    assert spec.ignored["resources.ports"] == 8081
    assert spec.ignored["service"]["replicas"] == 1


@needs_fixtures
def test_set_form_and_multi_document_without_header() -> None:
    llama = _fixture("llm__llama-3__llama3.yaml").tasks[0]
    assert llama.accelerators[:3] == [["L4", 8], ["A10g", 8], ["A10", 8]]
    assert len(llama.accelerators) == 8
    gpt2 = _fixture("llm__gpt-2__gpt2-pipeline.yaml")
    assert gpt2.pipeline_name is None
    assert [t.name for t in gpt2.tasks] == ["gpt2-data", "gpt2-train"]


# -- what a file becomes --------------------------------------------------------------------------


def test_full_job(load: Loader, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    spec = load(
        "name: train-resnet\n"
        "workdir: src\n"
        "num_nodes: 2\n"
        "resources:\n"
        "  cpus: 2+\n"
        "  memory: 512MiB\n"
        "  accelerators: {H100: 1}\n"
        "  labels: {queue: gpu, max: 3}\n"
        "  job_config: {max_restarts: 2, completions: 1}\n"
        "envs: {EPOCHS: 10, TOKEN: null, ON: yes, VERSION: 1.10}\n"
        "setup: pip install -r requirements.txt\n"
        "run: python train.py --epochs $EPOCHS\n"
        "file_mounts: {/data: ~/data}\n"
        "priority: -3\n"
        "depends_on: [prep-data, 12, {job: prep, condition: any}]\n"
        "timeout: 2h\n"
        "queue_timeout: 1d\n"
        "labels: {team: vision, queue: cpu}\n"
        "backend: local\n"
    ).tasks[0]
    assert spec.name == "train-resnet"
    assert spec.workdir == str(tmp_path / "src")
    assert (spec.num_nodes, spec.cpus, spec.memory_mib) == (2, 2.0, 512)
    assert spec.accelerators == [["H100", 1]]
    assert spec.envs == {"EPOCHS": "10", "TOKEN": None, "ON": "true", "VERSION": "1.10"}
    assert spec.setup == "pip install -r requirements.txt"
    assert spec.file_mounts == {"/data": "~/data"}
    assert spec.priority == -3
    assert spec.depends_on == [Dependency("prep-data"), Dependency(12), Dependency("prep", "any")]
    assert spec.retries == 2  # from max_restarts
    assert (spec.timeout, spec.queue_timeout) == (7200.0, 86400.0)
    assert spec.labels == {"queue": "cpu", "max": "3", "team": "vision"}  # top-level wins
    assert spec.backend == "local"
    assert spec.source == str(tmp_path / "job.yaml")


def test_defaults(load: Loader, tmp_path: Path) -> None:
    loaded = load("run: echo hi\n")
    assert loaded.warnings == [] and loaded.pipeline_name is None
    spec = loaded.tasks[0]
    assert spec == JobSpec(name="job", run="echo hi", workdir=str(tmp_path), source=str(tmp_path / "job.yaml"))


@pytest.mark.parametrize(
    ("accelerators", "expected"),
    [
        ('"A100:8"', [["A100", 8]]),
        ("A100", [["A100", 1]]),
        ("{A100: 8}", [["A100", 8]]),
        ("['A100-40GB:1', 'V100:1']", [["A100-40GB", 1], ["V100", 1]]),
        ("{A100: 1, Inferentia: 6}", [["A100", 1], ["Inferentia", 6]]),
        ("{H100:8, A100:8}", [["H100", 8], ["A100", 8]]),
        ("{L4, A10g}", [["L4", 1], ["A10g", 1]]),
        ("[{A100: 2}, T4]", [["A100", 2], ["T4", 1]]),
        ("[A100:1, A100:1]", [["A100", 1]]),
        ("null", []),
    ],
)
def test_accelerator_forms(load: Loader, accelerators: str, expected: list[list[object]]) -> None:
    spec = load(f"run: x\nresources:\n  accelerators: {accelerators}\n").tasks[0]
    assert spec.accelerators == expected


def test_pipeline_names_and_empty_documents(load: Loader) -> None:
    loaded = load("---\nname: p\n---\n# nothing here\n---\nrun: a\n---\nname: second\nrun: b\n---\nrun: c\n")
    assert loaded.pipeline_name == "p"
    assert [t.name for t in loaded.tasks] == ["job-1", "second", "job-3"]
    assert all(t.depends_on == [] for t in loaded.tasks)


def test_retries_wins_over_max_restarts_and_completions_warn(load: Loader) -> None:
    loaded = load("run: x\nretries: 5\nresources:\n  job_config: {max_restarts: 2, completions: 3}\n")
    assert loaded.tasks[0].retries == 5
    assert loaded.warnings == [
        "job.yaml:4: resources.job_config.completions: ignored (a job runs to completion once; use --array for copies)"
    ]


def test_ignored_keys_warn_and_are_kept(load: Loader) -> None:
    loaded = load("run: x\nresources:\n  use_spot: true\n  any_of: [{infra: aws}]\ndocker: {image: x}\n")
    assert loaded.warnings == [
        "job.yaml:3: resources.use_spot: ignored (only meaningful on a cloud or Kubernetes)",
        "job.yaml:4: resources.any_of: infra of each entry ignored (only meaningful on a cloud or "
        "Kubernetes); accelerators are honoured as alternatives",
        "job.yaml:5: docker: ignored (only meaningful on a cloud or Kubernetes)",
    ]
    assert loaded.tasks[0].ignored == {
        "resources.use_spot": True,
        "resources.any_of": [{"infra": "aws"}],
        "docker": {"image": "x"},
    }


def test_secrets_merge_into_envs(load: Loader) -> None:
    spec = load("run: x\nenvs: {A: '1'}\nsecrets: {TOKEN: null, KEY: abc}\n").tasks[0]
    assert spec.envs == {"A": "1", "TOKEN": None, "KEY": "abc"}
    assert spec.secrets == ["TOKEN", "KEY"]


def test_merge_keys_and_aliases(load: Loader) -> None:
    spec = load("run: x\nenvs:\n  <<: &base {A: 1, B: 2}\n  A: 3\nlabels: *base\n").tasks[0]
    assert spec.envs == {"A": "3", "B": "2"}
    assert spec.labels == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("file_name", "name"),
    [
        ("train job.yaml", "train-job"),
        ("kimi-k2.sky.yaml", "kimi-k2.sky"),
        ("_x.yml", "x"),
        ("---.yaml", "job"),
        ("a" * 200 + ".yaml", "a" * 128),
        ("noext", "noext"),
        ("-", "job"),
    ],
)
def test_default_name(file_name: str, name: str) -> None:
    assert default_name(file_name) == name


# -- errors: file:line: key: problem ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nresources:\n  cpus: two\nrun: echo\n",
            'job.yaml:3: resources.cpus: expected a number or "N+", got "two"',
        ),
        ("run: echo\nresourcse: {}\n", 'job.yaml:2: resourcse: unknown key (did you mean "resources"?)'),
        ("run: echo\nresources: {cpu: 2}\n", 'job.yaml:2: resources.cpu: unknown key (did you mean "cpus"?)'),
        ("run: echo\nzzzzzz: 1\n", "job.yaml:2: zzzzzz: unknown key"),
        ("run: [a]\n", "job.yaml:1: run: expected a shell command, got a list"),
        ("run: echo\nsetup: 3\n", "job.yaml:2: setup: expected a shell command, got 3"),
        ("- a\n- b\n", "job.yaml:1: expected a mapping of job keys (name, resources, run, ...), got a list"),
        ("just text\n", 'job.yaml:1: expected a mapping of job keys (name, resources, run, ...), got "just text"'),
        ("run: echo\n1: x\n", "job.yaml:2: expected string keys, got 1"),
        ("run: echo\n[a]: b\n", "job.yaml:2: expected string keys, got a list"),
        ("run: echo\nenvs: {1: x}\n", "job.yaml:2: envs: expected string keys, got 1"),
        ("run: echo\nnum_nodes: two\n", 'job.yaml:2: num_nodes: expected a whole number, got "two"'),
        ("run: echo\nnum_nodes: 1.5\n", "job.yaml:2: num_nodes: expected a whole number, got 1.5"),
        ("run: echo\nnum_nodes: true\n", "job.yaml:2: num_nodes: expected a whole number, got true"),
        ("run: echo\nnum_nodes: 0\n", "job.yaml:2: num_nodes: expected a whole number from 1 to 1024, got 0"),
        (
            "run: echo\nnum_nodes: 99999999999999999999999\n",
            "job.yaml:2: num_nodes: expected a whole number from 1 to 1024, got 99999999999999999999999",
        ),
        (
            "run: echo\npriority: 1000001\n",
            "job.yaml:2: priority: expected a whole number from -1000000 to 1000000, got 1000001",
        ),
        ("run: echo\nretries: -1\n", "job.yaml:2: retries: expected a whole number from 0 to 1000, got -1"),
        (
            "run: echo\nresources:\n  job_config: {max_restarts: 1001}\n",
            "job.yaml:3: resources.job_config.max_restarts: expected a whole number from 0 to 1000, got 1001",
        ),
        (
            "run: echo\nresources: {cpus: 1.0e+400}\n",
            "job.yaml:2: resources.cpus: expected at most 100000 CPUs, got inf",
        ),
        ("run: echo\nresources: {cpus: 0}\n", "job.yaml:2: resources.cpus: expected a number above 0, got 0"),
        ("run: echo\nresources: {memory: -1}\n", "job.yaml:2: resources.memory: expected a size above 0, got -1"),
        ("run: echo\nresources: {memory: 0GiB}\n", 'job.yaml:2: resources.memory: expected a size above 0, got "0GiB"'),
        (
            "run: echo\ntimeout: soon\n",
            "job.yaml:2: timeout: expected a duration such as 90 (seconds), "
            '"45s", "30m", "2h", "1d" or "1h30m", got "soon"',
        ),
        ("run: echo\nqueue_timeout: -5\n", "job.yaml:2: queue_timeout: expected a duration above 0, got -5"),
        (
            "run: echo\nresources:\n  accelerators: A100:0.0\n",
            "job.yaml:3: resources.accelerators: expected a whole number of accelerators (fractions are "
            'not supported), got "A100:0.0"',
        ),
        (
            "run: echo\nresources:\n  accelerators: {A100: 2000.5}\n",
            "job.yaml:3: resources.accelerators.A100: expected a whole number of accelerators (fractions "
            "are not supported), got 2000.5",
        ),
        (
            "run: echo\nresources:\n  accelerators: {A100: 0}\n",
            "job.yaml:3: resources.accelerators.A100: expected from 1 to 1024 accelerators, got 0",
        ),
        (
            "run: echo\nresources:\n  accelerators: 8\n",
            'job.yaml:3: resources.accelerators: expected an accelerator such as "H100" or "H100:8", got 8',
        ),
        (
            "run: echo\nresources:\n  accelerators:\n    - V100\n    - [A100]\n",
            'job.yaml:5: resources.accelerators[1]: expected an accelerator such as "H100" or "H100:8", got a list',
        ),
        (
            "run: echo\nname: -bad\n",
            "job.yaml:2: name: expected letters, digits, '.', '_' and '-' "
            'starting with a letter or digit (at most 128), got "-bad"',
        ),
        (
            "run: echo\nenvs:\n  1A: x\n",
            "job.yaml:3: envs.1A: not a valid environment variable name "
            "(letters, digits and _, not starting with a digit)",
        ),
        (
            "run: echo\nenvs: {A: [1]}\n",
            "job.yaml:2: envs.A: expected a string, a number, true/false or null, got a list",
        ),
        ("run: echo\nenvs: {A: x}\nsecrets: {A: null}\n", "job.yaml:3: secrets.A: also set in envs"),
        ("run: echo\nlabels: [a]\n", "job.yaml:2: labels: expected a mapping, got a list"),
        ("run: echo\nfile_mounts: /data\n", 'job.yaml:2: file_mounts: expected a mapping, got "/data"'),
        (
            "run: echo\ndepends_on: [{job: x, conditon: any}]\n",
            'job.yaml:2: depends_on[0].conditon: unknown key (did you mean "condition"?)',
        ),
        (
            "run: echo\ndepends_on: [{job: x, condition: maybe}]\n",
            'job.yaml:2: depends_on[0].condition: expected ok, any or failed, got "maybe"',
        ),
        ("run: echo\ndepends_on: [{condition: ok}]\n", "job.yaml:2: depends_on[0].job: missing (the job name or ID)"),
        ("run: echo\ndepends_on: 0\n", "job.yaml:2: depends_on: expected a job name or ID, got 0"),
        ("run: echo\nbackend: k8s\n", 'job.yaml:2: backend: expected local or slurm, got "k8s"'),
        ("run: echo\nname: a\nrun: echo 2\n", "job.yaml:3: run: duplicate key (first at line 1)"),
        (
            "run: echo\nresources:\n  cpus: 1\n  cpus: 2\n",
            "job.yaml:4: resources.cpus: duplicate key (first at line 3)",
        ),
        ("# nothing\n---\n---\n", "job.yaml: no job in this file (a job needs at least a run command)"),
        ("", "job.yaml: no job in this file (a job needs at least a run command)"),
        ("run: echo\nretries: !!int abc\n", 'job.yaml:2: retries: not a valid !!int: "abc"'),
        (
            "run: !!python/object/apply:os.system ['echo hi']\n",
            "job.yaml:1: run: unsupported YAML tag !!python/object/apply:os.system",
        ),
        (
            "run: echo\nservice: !!python/object:os.getcwd {}\n",
            "job.yaml:2: service: unsupported YAML tag !!python/object:os.getcwd",
        ),
        ("run: echo\nfile_mounts: {a: !custom x}\n", "job.yaml:2: file_mounts.a: unsupported YAML tag !custom"),
        ("run: echo\nfile_mounts: &a {x: *a}\n", "job.yaml:2: file_mounts.x.x.x."),
        ("run: echo\nresources: [\n", "job.yaml:3: invalid YAML: "),
        ("run: echo\n  bad: indent\n", "job.yaml:2: invalid YAML: mapping values are not allowed here"),
        ("run: echo\n\tx: 1\n", "job.yaml:2: invalid YAML: found character '\\t' that cannot start any token"),
        ("run: *nowhere\n", "job.yaml:1: invalid YAML: found undefined alias 'nowhere'"),
        ("run: echo\nx: " + "[" * 60 + "]" * 60 + "\n", "job.yaml:2: nested deeper than 50 levels"),
        (
            "run: echo\nlabels:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(60)),
            "job.yaml:51: nested deeper than 50 levels",
        ),
        ("run: echo\x00\n", "job.yaml:1: invalid YAML: character U+0000 is not allowed"),
        (b"run: echo\n\xff\xfe\x00garbage\n", "job.yaml:2: not UTF-8 text (byte 0xff)"),
        (
            'run: echo\nname: "a\\u2028b\\nc"\n',
            "job.yaml:2: name: expected letters, digits, "
            "'.', '_' and '-' starting with a letter or digit (at most 128), "
            'got "a\\u2028b\\nc"',
        ),
    ],
)
def test_error_messages(load: Loader, tmp_path: Path, text: str | bytes, message: str) -> None:
    assert error_of(load, text).startswith(message.replace("{tmp}", str(tmp_path)))


def test_error_fields(load: Loader) -> None:
    with pytest.raises(JobFileError) as info:
        load("run: echo\nresources:\n  memory: lots\n")
    assert (info.value.path, info.value.line, info.value.key) == ("job.yaml", 3, "resources.memory")
    assert info.value.exit_code == 2


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="no such file"):
        load_jobfile(str(tmp_path / "nope.yaml"))
    with pytest.raises(JobFileError, match="is a directory"):
        load_jobfile(str(tmp_path))


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MiB on paper, nothing on disk
    start = time.monotonic()
    with pytest.raises(JobFileError) as info:
        load_jobfile(str(path))
    assert time.monotonic() - start < 1
    assert str(info.value) == f"{path}: job file is 50.0 MiB; the limit is 1 MiB"
    with pytest.raises(JobFileError, match=r"job file is 2\.0 MiB; the limit is 1 MiB"):
        load_jobfile(str(path), "run: x\n" + "#" * (2 * 1024 * 1024 - 7))


def test_billion_laughs_is_refused_quickly(load: Loader) -> None:
    letters = "abcdefghij"
    lines = ["run: echo", "file_mounts:", '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip(letters, letters[1:]):
        lines.append(f"  {cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    start = time.monotonic()
    message = error_of(load, "\n".join(lines) + "\n")
    assert time.monotonic() - start < 5
    assert "aliases; refusing (an alias bomb?)" in message
    assert message.startswith("job.yaml:")


def test_many_values_are_refused(load: Loader) -> None:
    message = error_of(load, "run: echo\nfile_mounts: {a: [" + "1," * 100_001 + "]}\n")
    assert message == "job.yaml:2: more than 100000 values in one job file"


# -- overrides ----------------------------------------------------------------------------------


def test_apply_overrides() -> None:
    spec = JobSpec(name="a", run="x", accelerators=[["H100", 8]])
    new = apply_overrides(spec, cpus="2", memory="4GiB", gpus="2", num_nodes="3", name="b")
    assert (new.cpus, new.memory_mib, new.accelerators, new.num_nodes, new.name) == (2.0, 4096, [["H100", 2]], 3, "b")
    assert spec.accelerators == [["H100", 8]] and spec.name == "a"  # the original is untouched
    assert apply_overrides(spec, gpus="A100:2").accelerators == [["A100", 2]]
    assert apply_overrides(spec, gpus="A100:2,V100").accelerators == [["A100", 2], ["V100", 1]]
    assert apply_overrides(spec, gpus="0").accelerators == []
    assert apply_overrides(spec, memory=0.5).memory_mib == 512
    two_kinds = JobSpec(name="a", run="x", accelerators=[["H100", 8], ["A100", 8]])
    assert apply_overrides(two_kinds, gpus="4").accelerators == [["GPU", 4]]
    assert apply_overrides(JobSpec(name="a", run="x"), gpus=1).accelerators == [["GPU", 1]]
    assert apply_overrides(spec) == spec


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("cpus", "x", '--cpus: expected a number or "N+", got "x"'),
        ("cpus", "0", '--cpus: expected a number above 0, got "0"'),
        ("memory", "lots", '--memory: expected a size such as 4 (GiB), "512MiB", "4GiB" or "4+", got "lots"'),
        (
            "gpus",
            "H100:0.5",
            '--gpus: expected a whole number of accelerators (fractions are not supported), got "H100:0.5"',
        ),
        ("gpus", "a b", '--gpus: expected an accelerator such as "H100" or "H100:8", got "a b"'),
        ("gpus", "H100:0", "--gpus: expected from 1 to 1024 accelerators, got 0"),
        ("num_nodes", "0", "--num-nodes: expected a whole number from 1 to 1024, got 0"),
        ("num_nodes", "two", '--num-nodes: expected a whole number from 1 to 1024, got "two"'),
        (
            "name",
            "-x",
            "--name: expected letters, digits, '.', '_' and '-' starting with a letter or digit "
            '(at most 128), got "-x"',
        ),
    ],
)
def test_override_errors(option: str, value: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        apply_overrides(JobSpec(name="a", run="x"), **{option: value})
    assert str(info.value) == message
    assert not isinstance(info.value, JobFileError)


# -- hostile input: only LoadedFile or a one-line JobFileError ------------------------------------

HERE = str(Path(__file__).resolve().parent / "fuzz.yaml")  # never written: text is passed in


def _check(text: str | bytes) -> None:
    try:
        loaded = load_jobfile(HERE, text)
    except JobFileError as e:
        assert len(str(e).splitlines()) == 1, str(e)
    else:
        assert isinstance(loaded, LoadedFile) and loaded.tasks
        assert all(len(w.splitlines()) == 1 for w in loaded.warnings)
        for spec in loaded.tasks:
            assert JobSpec.from_dict(spec.to_dict()) == spec


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["H100:8", "4+", "2h", "512MiB", "-1", "1e400", "ok", "$X", "~", "x\u2028y"]),
)
_keys = st.one_of(
    st.sampled_from(
        [
            "name",
            "run",
            "setup",
            "workdir",
            "num_nodes",
            "resources",
            "cpus",
            "memory",
            "accelerators",
            "envs",
            "secrets",
            "labels",
            "job_config",
            "max_restarts",
            "depends_on",
            "job",
            "condition",
            "priority",
            "retries",
            "timeout",
            "file_mounts",
            "image_id",
            "service",
            "A100",
            "H100:8",
        ]
    ),
    _scalars,
)
_trees = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=4)),
    max_leaves=25,
)
_documents = st.one_of(
    _trees,
    st.fixed_dictionaries(
        {"run": st.one_of(st.just("echo hi"), _scalars)},
        optional={
            k: _trees for k in ("name", "resources", "envs", "depends_on", "labels", "retries", "timeout", "workdir")
        },
    ),
)
_fragments = st.sampled_from(
    [
        "run: x",
        "resources:",
        "  cpus: ",
        "  accelerators: {",
        "[",
        "]",
        "{",
        "}",
        ": ",
        "- ",
        "---",
        "&a ",
        "*a",
        "<<: *a",
        "!!python/object:os.system",
        "!x ",
        "? ",
        "|",
        ">-",
        '"',
        "'",
        "\t",
        "#",
        "\n",
        "  ",
        "1e400",
        "99999999999999999999999",
        "~",
        "\x00",
        "\u2028",
        "\ufeff",
        "%YAML 1.1",
        "!!binary",
        "2024-01-01",
        "0x1F",
        "1:30",
        ".nan",
        "envs: {1: 2}",
        "name: x",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_documents, min_size=1, max_size=3))
def test_fuzz_yaml_trees(documents: list[object]) -> None:
    _check(yaml.safe_dump_all(documents, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(_fragments, max_size=40).map("".join))
def test_fuzz_yaml_fragments(text: str) -> None:
    _check(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_text(text: str) -> None:
    _check(text)


# -- every key of the SkyPilot and Konduktor schemas (SPEC section 8) ------------------------------

from jobctl.jobfile import loader as jobfile_module  # noqa: E402


def test_every_schema_key_loads_with_one_warning_per_key_not_honoured(load: Loader) -> None:
    top = {key: "{a: 1}" for key in jobfile_module.SCHEMA_TOP_KEYS}
    resources = {key: "x" for key in jobfile_module.SCHEMA_RESOURCE_KEYS}
    text = (
        "run: echo\n"
        + "".join(f"{k}: {v}\n" for k, v in top.items())
        + "resources:\n"
        + "".join(f"  {k}: {v}\n" for k, v in resources.items())
    )
    loaded = load(text)
    spec = loaded.tasks[0]
    keys = [w.split(": ", 2)[1] for w in loaded.warnings]
    assert sorted(keys) == sorted(list(top) + [f"resources.{k}" for k in resources])  # one each
    assert set(spec.ignored) == set(keys)
    assert all(len(w.splitlines()) == 1 and w.startswith("job.yaml:") for w in loaded.warnings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run: x\nresources:\n  candidate: []\n", 'resources.candidate: unknown key (did you mean "candidates"?)'),
        ("run: x\nexecutoin: parallel\n", 'executoin: unknown key (did you mean "execution"?)'),
        ("run: x\nevent_callbak: x\n", 'event_callbak: unknown key (did you mean "event_callback"?)'),
        (
            "run: x\nresources:\n  any_of: [{acelerators: A100}]\n",
            'resources.any_of[0].acelerators: unknown key (did you mean "accelerators"?)',
        ),
        ("run: x\nworkdir: {url: x, reff: v1}\n", 'workdir.reff: unknown key (did you mean "ref"?)'),
        ("run: x\nworkdir: {ref: v1}\n", "workdir.url: missing (the git repository to clone)"),
        ("run: x\nworkdir: {url: '--upload-pack=x'}\n", "workdir.url: expected a git repository URL"),
        ("run: x\nworkdir: {url: x, ref: -x}\n", 'workdir.ref: expected a branch, tag or commit, got "-x"'),
        ("run: x\nexecution: parallel\n", "execution: expected serial here"),
        ("---\nname: g\nexecution: sideways\n---\nrun: x\n", 'execution: expected serial or parallel, got "sideways"'),
        ("run: x\nresources:\n  priority: 5000\n", "resources.priority: expected a whole number from -1000 to 1000"),
        (
            "run: x\nresources:\n  job_recovery: {max_restarts_on_errors: -1}\n",
            "resources.job_recovery.max_restarts_on_errors: expected a whole number from 0 to 1000, got -1",
        ),
    ],
)
def test_schema_key_errors(load: Loader, text: str, message: str) -> None:
    assert message in error_of(load, text)


def test_alternatives_recovery_priority_and_gpus_alias_are_honoured(load: Loader) -> None:
    loaded = load(
        "run: x\nresources:\n  accelerators: A100:8\n  any_of:\n    - {infra: aws, accelerators: H100:8}\n"
        "    - {infra: gcp}\n  job_recovery: {strategy: FAILOVER, max_restarts_on_errors: 3}\n"
        "  priority: 7\n"
    )
    spec = loaded.tasks[0]
    assert spec.accelerators == [["H100", 8], ["A100", 8]]
    assert (spec.retries, spec.priority) == (3, 7)
    assert any("resources.any_of: infra of each entry ignored" in w for w in loaded.warnings)
    assert any(
        "resources.job_recovery: ignored (recovery from cloud preemptions; use retries); "
        "max_restarts_on_errors is honoured as retries" in w
        for w in loaded.warnings
    )
    spec = load(
        "run: x\npriority: 1\nretries: 0\nresources:\n  gpus: L4:2\n  candidates: [{accelerators: T4}]\n"
        "  spot_recovery: {max_restarts_on_errors: 5}\n  priority: 9\n"
    ).tasks[0]
    assert spec.accelerators == [["T4", 1]]  # candidates (the old any_of) replace the task's own
    assert (spec.retries, spec.priority) == (0, 1)  # ours win over SkyPilot's
    assert load("run: x\nresources:\n  ordered: [{accelerators: T4}, {cpus: 4}]\n").tasks[0].accelerators == []


def test_fractional_accelerators_round_up_with_a_warning(load: Loader) -> None:
    loaded = load("run: x\nresources:\n  accelerators: T4:0.5\n")
    assert loaded.tasks[0].accelerators == [["T4", 1]]
    assert loaded.warnings == [
        'job.yaml:3: resources.accelerators: "T4:0.5": a fraction of an accelerator '
        "is reserved as 1 whole device(s) here"
    ]
    assert load("run: x\nresources:\n  accelerators: {A100: 1.5}\n").tasks[0].accelerators == [["A100", 2]]


def test_git_workdir(load: Loader, tmp_path: Path) -> None:
    spec = load("run: x\nworkdir:\n  url: https://github.com/org/repo.git\n  ref: 1.10\n").tasks[0]
    assert spec.workdir_git == {"url": "https://github.com/org/repo.git", "ref": "1.10"}
    assert JobSpec.from_dict(spec.to_dict()) == spec
    spec = load("run: x\nworkdir: {url: ../repo}\n").tasks[0]  # a local path: relative to the file
    assert spec.workdir_git == {"url": str(tmp_path.parent / "repo"), "ref": None}
    assert (
        load("run: x\nworkdir: {url: 'git@github.com:org/repo.git'}\n").tasks[0].workdir_git["url"]
        == "git@github.com:org/repo.git"
    )


@pytest.mark.parametrize("workdir", ["mistral", "/root/transformers", "~/Downloads/temp1-no-such"])
def test_missing_workdir_loads_with_a_warning(load: Loader, tmp_path: Path, workdir: str) -> None:
    loaded = load(f"run: x\nworkdir: {workdir}\n")
    path = os.path.abspath(os.path.join(tmp_path, os.path.expanduser(workdir)))
    assert loaded.tasks[0].workdir == path
    assert loaded.warnings == [f'job.yaml:2: workdir: "{path}" does not exist here (a real launch is refused)']


@pytest.mark.parametrize(
    ("text", "setup", "warning"),
    [
        (
            "setup: pip install x\n",
            "pip install x",
            "job.yaml:1: run: missing: SkyPilot would only provision; a real launch runs setup alone",
        ),
        ("name: x\n", None, "job.yaml:1: run: missing: nothing to run (no run, no setup); a real launch is refused"),
        ("name: x\nrun:\n", None, "job.yaml:2: run: missing: nothing to run"),
        ("run: '  '\n", None, "job.yaml:1: run: missing: nothing to run"),
    ],
)
def test_no_run_loads_with_a_warning(load: Loader, text: str, setup: str | None, warning: str) -> None:
    loaded = load(text)
    assert (loaded.tasks[0].run, loaded.tasks[0].setup) == ("", setup)
    assert len(loaded.warnings) == 1 and loaded.warnings[0].startswith(warning)


def test_job_group_header(load: Loader) -> None:
    loaded = load(
        "---\nname: grp\nexecution: parallel\nprimary_tasks: [a]\ntermination_delay: 5s\n---\n"
        "name: a\nrun: x\n---\nname: b\nrun: y\n"
    )
    assert loaded.parallel and loaded.pipeline_name == "grp"
    assert [t.name for t in loaded.tasks] == ["a", "b"]
    assert [w.split(": ")[1] for w in loaded.warnings] == ["primary_tasks", "termination_delay"]
    serial = load("---\nname: p\nexecution: serial\n---\nrun: x\n---\nrun: y\n")
    assert not serial.parallel and len(serial.tasks) == 2
    only = load("name: just-a-header\nexecution: serial\n")  # SkyPilot: one task with nothing to run
    assert [t.name for t in only.tasks] == ["just-a-header"] and only.tasks[0].run == ""


# Values of every JSON-ish shape, for every key of the schema's key space.
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["A100:8", "H100", "2+", "4GiB", "1h", "."]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["url", "ref", "accelerators", "infra", "cpus", "x", "A100"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)
_resource_keys = st.sampled_from(jobfile_module.ALL_RESOURCE_KEYS)
_top_keys = st.sampled_from(jobfile_module.ALL_TOP_KEYS)
_task = st.fixed_dictionaries({}, optional={"run": st.sampled_from(["echo hi", ""])}).flatmap(
    lambda base: st.dictionaries(_top_keys, _values, max_size=6).flatmap(
        lambda top: st.dictionaries(_resource_keys, _values, max_size=5).map(
            lambda res: {**base, **top, **({"resources": res} if res else {})}
        )
    )
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_task, min_size=1, max_size=3))
def test_fuzz_schema_key_space(documents: list[dict[str, object]]) -> None:
    """Random combinations of the schemas' keys with random value types: a job, or one clean error."""
    text = yaml.safe_dump_all(documents)
    try:
        loaded = load_jobfile("fuzz.yaml", text)
    except (JobFileError, UsageError) as e:
        assert e.exit_code == 2 and len(str(e).splitlines()) == 1
        return
    assert loaded.tasks
    for spec in loaded.tasks:
        assert JobSpec.from_dict(spec.to_dict()) == spec


def test_what_a_real_launch_refuses_is_listed_with_its_place(load: Loader, tmp_path: Path) -> None:
    loaded = load("workdir: nope\nresources: {cpus: 1}\n---\nworkdir: {url: ./no-repo}\nsetup: echo\n")
    assert loaded.problems == [
        f'job.yaml:1: workdir: "{tmp_path}/nope" does not exist here',
        "job.yaml:1: run: missing (a job needs a run command, or at least setup)",
        f'job.yaml:4: workdir.url: "{tmp_path}/no-repo" does not exist (the git repository to clone)',
    ]
    assert load("run: x\n").problems == []
