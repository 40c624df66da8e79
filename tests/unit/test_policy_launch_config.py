"""Pure rules: extension policy, start-request building (patterns, signals, environment), inventory, states, errors."""

import os
import pathlib
import shutil
import signal

import pytest

from melond import config, errors
from melond.sched import launch
from melond.sched import policy
from melond.errors import BadRequest, Conflict, Forbidden, MelonError
from melond.sched.policy import Caller
from melond.spec.states import END_REASONS, FINISHED, State, end_state, parse_states
from melond.state.job import Job
from melond.api.tokens import TokenError
from melond.spec.directives import DirectiveError
from melond.spec.jobrel import RelError
from melond.spec.timespec import SpecError

EXAMPLE = str(pathlib.Path(config.__file__).resolve().parents[1] / "inventory.example.toml")
HOUR = 3600

OWNER = Caller(user="alice", uid=1000)
OTHER = Caller(user="bob", uid=1001)
OPERATOR = Caller(user="carol", uid=1002, operator=True)


def a_job(state="RUNNING", limit=HOUR, user="alice", **extra) -> Job:
    return Job(id=42, user=user, uid=1000, name="job", state=State(state), time_limit=limit, partition="debug",
               **extra)


# ---- policy -------------------------------------------------------------------------------------

# name: (caller, state, current limit, new limit, partition MaxTime, refusal or None, words in the refusal)
EXTENSIONS = {
    "owner extends within MaxTime": (OWNER, "RUNNING", HOUR, 2 * HOUR, 2 * HOUR, None, ""),
    "owner extends a pending job": (OWNER, "PENDING", HOUR, 2 * HOUR, 2 * HOUR, None, ""),
    "owner keeps the same limit": (OWNER, "RUNNING", HOUR, HOUR, 2 * HOUR, None, ""),
    "owner goes past MaxTime": (OWNER, "RUNNING", HOUR, 2 * HOUR + 1, 2 * HOUR, Forbidden, "MaxTime"),
    "owner asks for unlimited under a MaxTime": (OWNER, "RUNNING", HOUR, 0, 2 * HOUR, Forbidden, "MaxTime"),
    "owner without a MaxTime is unbounded": (OWNER, "RUNNING", HOUR, 100 * HOUR, 0, None, ""),
    "owner without a MaxTime may go unlimited": (OWNER, "RUNNING", HOUR, 0, 0, None, ""),
    "owner may not shorten": (OWNER, "RUNNING", 2 * HOUR, HOUR, 4 * HOUR, Forbidden, "only an operator may shorten"),
    "operator goes past MaxTime": (OPERATOR, "RUNNING", HOUR, 50 * HOUR, 2 * HOUR, None, ""),
    "operator goes unlimited": (OPERATOR, "PENDING", HOUR, 0, 2 * HOUR, None, ""),
    "operator shortens": (OPERATOR, "RUNNING", 2 * HOUR, 60, 2 * HOUR, None, ""),
    "other user is refused": (OTHER, "RUNNING", HOUR, 2 * HOUR, 2 * HOUR, Forbidden, "belongs to alice"),
    "other user is refused even within bounds": (OTHER, "PENDING", HOUR, HOUR, 0, Forbidden, "only its owner"),
    "finished job before MaxTime": (OWNER, "COMPLETED", HOUR, 9 * HOUR, 2 * HOUR, Conflict, "already ended"),
    "finished job before shortening": (OWNER, "TIMEOUT", 2 * HOUR, HOUR, 2 * HOUR, Conflict, "TIMEOUT"),
    "finished job refused to an operator": (OPERATOR, "CANCELLED", HOUR, 2 * HOUR, 0, Conflict, "cannot be extended"),
}


@pytest.mark.parametrize("caller, state, current, new, max_time, refusal, words",
                         EXTENSIONS.values(), ids=EXTENSIONS.keys())
def test_check_extension(caller, state, current, new, max_time, refusal, words):
    job = a_job(state, current)
    if refusal is None:
        policy.check_extension(job, caller, new, max_time, "debug")
        return
    with pytest.raises(refusal) as err:
        policy.check_extension(job, caller, new, max_time, "debug")
    assert type(err.value) is refusal
    assert words in str(err.value)
    assert "42" in str(err.value)


def test_owner_may_not_shorten_an_unlimited_job():
    with pytest.raises(Forbidden, match="shorten"):
        policy.check_extension(a_job("RUNNING", 0), OWNER, HOUR, 0, "debug")


# name: (state, current limit, add, to, result or refusal)
NEW_LIMITS = {
    "add to a limit": ("RUNNING", HOUR, 600, None, HOUR + 600),
    "a new total": ("PENDING", HOUR, None, 5 * HOUR, 5 * HOUR),
    "a new total of unlimited": ("PENDING", HOUR, None, 0, 0),
    "a total replaces an unlimited limit": ("RUNNING", 0, None, HOUR, HOUR),
    "nothing to add to unlimited": ("RUNNING", 0, 600, None, Conflict),
    "finished, adding": ("FAILED", HOUR, 600, None, Conflict),
    "finished, a total": ("NODE_FAIL", HOUR, None, 2 * HOUR, Conflict),
}


@pytest.mark.parametrize("state, current, add, to, expected", NEW_LIMITS.values(), ids=NEW_LIMITS.keys())
def test_new_limit(state, current, add, to, expected):
    job = a_job(state, current)
    if isinstance(expected, type):
        with pytest.raises(expected):
            policy.new_limit(job, add=add, to=to)
    else:
        assert policy.new_limit(job, add=add, to=to) == expected


@pytest.mark.parametrize("caller, allowed", [(OWNER, True), (OPERATOR, True), (OTHER, False)])
@pytest.mark.parametrize("action", ["cancel", "extend", "show"])
def test_check_owner(caller, allowed, action):
    if allowed:
        policy.check_owner(a_job(), caller, action)
    else:
        with pytest.raises(Forbidden, match=f"only its owner or an operator may {action} it"):
            policy.check_owner(a_job(), caller, action)


@pytest.mark.parametrize("state", sorted(FINISHED))
def test_every_finished_state_is_final(state):
    with pytest.raises(Conflict):
        policy.check_not_finished(a_job(state))


# ---- launch: filename patterns ------------------------------------------------------------------

PLAIN = Job(id=42, name="train", user="alice", uid=1000, partition="debug")
TASK = Job(id=45, name="sweep", user="bob", uid=1001, partition="debug", array_job_id=42, array_task_id=3)

PATTERNS = [
    (PLAIN, "%j", "42"), (PLAIN, "%J", "42"), (PLAIN, "%x", "train"), (PLAIN, "%u", "alice"),
    (PLAIN, "%N", "node7"), (PLAIN, "%A", "42"), (PLAIN, "%a", launch.NO_VAL_TASK), (PLAIN, "%%", "%"),
    (PLAIN, "%4j", "0042"), (PLAIN, "%2j", "42"), (PLAIN, "%1j", "42"), (PLAIN, "%10x", "train"),
    (PLAIN, "%%j", "%j"), (PLAIN, "100%%", "100%"), (PLAIN, "%n.%t.%s", "0.0.batch"), (PLAIN, "%q%", "%q%"),
    (PLAIN, "out/%x-%j.log", "out/train-42.log"), (PLAIN, "/plain/path", "/plain/path"),
    (TASK, "%A_%a.out", "42_3.out"), (TASK, "%j", "45"), (TASK, "%3a", "003"), (TASK, "%u@%N", "bob@node7"),
]


@pytest.mark.parametrize("job, pattern, expected", PATTERNS)
def test_expand_pattern(job, pattern, expected):
    assert launch.expand_pattern(pattern, job, "node7") == expected


# ---- launch: --signal ---------------------------------------------------------------------------

# Without B: the signal is for the job's steps (what srun started), with it the batch shell alone.
SIGNALS = {
    "USR1": (signal.SIGUSR1, 60, "steps"), "SIGUSR1": (signal.SIGUSR1, 60, "steps"),
    "usr2@5": (signal.SIGUSR2, 5, "steps"), "B:USR1@90": (signal.SIGUSR1, 90, "batch"),
    "b:TERM": (signal.SIGTERM, 60, "batch"), "R:INT@30": (signal.SIGINT, 30, "steps"),
    "RB:USR2@10": (signal.SIGUSR2, 10, "batch"), "BR:USR2@10": (signal.SIGUSR2, 10, "batch"),
    "10@30": (10, 30, "steps"), "64": (64, 60, "steps"), "HUP@0": (signal.SIGHUP, 0, "steps"),
}


@pytest.mark.parametrize("text, expected", SIGNALS.items(), ids=SIGNALS.keys())
def test_parse_signal(text, expected):
    assert launch.parse_signal(text) == (int(expected[0]), expected[1], expected[2])


@pytest.mark.parametrize("text", ["", "FOO", "USR1@x", "USR1@1.5", "USR1@-5", "0", "65", "B:", "@30", "X:USR1"])
def test_parse_signal_refuses(text):
    with pytest.raises(BadRequest, match="--signal"):
        launch.parse_signal(text)


# ---- launch: environment and start request ------------------------------------------------------

def stored_job(**extra) -> Job:
    job = {
        "id": 42, "name": "train", "user": "alice", "uid": 1000, "cpus": 4, "memory": 2048 * 1024 * 1024,
        "partition": "debug", "chdir": "/home/alice/run", "submit_dir": "/home/alice", "submit_host": "login1",
        "environment": {"FOO": "bar", "SLURM_JOB_ID": "7", "MELON_JOB_ID": "7"}, "restarts": 0,
        "script": "#!/bin/sh\necho hi\n", "script_args": ["a b", "$HOME"], "output": "%x-%j.out", "error": None,
        "time_limit": HOUR, "signal": None,
    }
    job.update(extra)
    return Job(**job)


def test_job_environment_has_melon_and_slurm_twins():
    env = launch.job_environment(stored_job(), "node7", home="/home/alice")
    expected = {
        "JOB_ID": "42", "JOB_NAME": "train", "CPUS_PER_TASK": "4", "MEM_PER_NODE": "2048",
        "SUBMIT_DIR": "/home/alice", "SUBMIT_HOST": "login1", "NODENAME": "node7", "JOB_PARTITION": "debug",
        "JOB_USER": "alice", "JOB_UID": "1000", "RESTART_COUNT": "0",
    }
    for key, value in expected.items():
        assert env[f"MELON_{key}"] == value, key
        assert env[f"SLURM_{key}"] == value, key
    assert "MELON_ARRAY_TASK_ID" not in env and "SLURM_ARRAY_TASK_ID" not in env
    assert env["SLURM_JOBID"] == "42" and env["SLURMD_NODENAME"] == "node7"
    assert env["FOO"] == "bar"  # exported
    assert (env["USER"], env["LOGNAME"], env["HOME"]) == ("alice", "alice", "/home/alice")
    assert env["PATH"] == launch.DEFAULT_PATH
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())


@pytest.mark.parametrize(("options", "tasks"), [
    ({}, "1"), ({"ntasks": "4"}, "4"), ({"ntasks-per-node": "2"}, "2"), ({"ntasks": "3", "ntasks-per-node": "2"}, "3"),
    ({"ntasks": "x"}, "1"), ({"ntasks": "0"}, "1")])
def test_the_jobs_task_count_is_what_srun_runs_without_n(options: dict, tasks: str) -> None:
    """env_array_for_batch_job (src/common/env.c): -n, else --ntasks-per-node times the nodes."""
    env = launch.job_environment(stored_job(slurm_options=options), "n1")
    assert [env[k] for k in ("SLURM_NTASKS", "SLURM_NPROCS", "SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE")] == \
        [tasks] * 4


def test_job_environment_of_an_array_task_and_an_exported_path():
    job = stored_job(id=45, array_job_id=42, array_task_id=3, environment={"PATH": "/opt/bin", "HOME": "/h"},
                     submit_dir=None)
    env = launch.job_environment(job, "n1", home="/home/alice")
    for prefix in ("MELON_", "SLURM_"):
        assert env[prefix + "ARRAY_TASK_ID"] == "3"
        assert env[prefix + "ARRAY_JOB_ID"] == "42"
        assert env[prefix + "SUBMIT_DIR"] == "/home/alice/run"  # falls back to the working directory
    assert env["PATH"] == "/opt/bin" and env["HOME"] == "/h"


SPANNING = {"state": State.RUNNING, "node": "n1", "cpus": 7, "cpus_per_task": 1, "ntasks": 7, "nodes_min": 3,
            "parts": [["n1", 2, 2, 100, "0-1"], ["n2", 2, 2, 100, "4-5"], ["n3", 3, 3, 150, None]]}


def test_a_spanning_jobs_environment_names_every_node_in_slurms_forms():
    """SLURM_JOB_NODELIST as a host list, the per-node counts compressed (`2(x2),3`), and each
    node's own index and CPUs (env_array_for_batch_job in src/common/env.c)."""
    job = stored_job(**SPANNING)
    for index, node in enumerate(("n1", "n2", "n3")):
        env = launch.job_environment(job, node, hosts={}, index=index)
        assert env["SLURM_JOB_NODELIST"] == env["SLURM_NODELIST"] == "n[1-3]"
        assert env["SLURM_NNODES"] == env["SLURM_JOB_NUM_NODES"] == "3" and env["SLURM_NTASKS"] == "7"
        assert env["SLURM_TASKS_PER_NODE"] == env["SLURM_JOB_CPUS_PER_NODE"] == "2(x2),3"
        assert env["SLURM_NODEID"] == str(index) and env["SLURMD_NODENAME"] == node
        assert env["SLURM_CPUS_ON_NODE"] == ("2", "2", "3")[index]
        assert env["SLURM_MEM_PER_NODE"] == ("100", "100", "150")[index]


def test_a_spanning_jobs_further_nodes_run_its_holder_in_their_part():
    job = stored_job(**SPANNING)
    first = launch.start_request(job, "n1", kill_wait=1, tasks_max=0)
    further = launch.start_request(job, "n3", kill_wait=1, tasks_max=0)
    assert first["script"] == job.script and (first["cpus"], first["cpu_ids"], first["memory"]) == (2, [0, 1], 100 << 20)
    assert further["script"].startswith("#!/usr/bin/env python3\n") and "melon-share-" in further["script"]
    assert (further["cpus"], further["cpu_ids"], further["memory"]) == (3, None, 150 << 20)
    assert further["output"] == os.devnull and further["error"] is None and further["args"] == []
    assert further["env"]["SLURM_NODEID"] == "2"


def test_counts_compress_and_expand_as_slurms() -> None:
    from melond.spec.shape import compressed, uncompressed
    for values in ([2, 2, 2, 1], [1], [3, 1, 1, 4]):
        assert uncompressed(compressed(values)) == values
    assert uncompressed("2(x3),1") == [2, 2, 2, 1]


def test_start_request_carries_exactly_what_the_node_needs():
    req = launch.start_request(stored_job(signal="B:USR1@90", error="%j.err"), "node7",
                               kill_wait=30, tasks_max=512, home="/home/alice")
    assert set(req) == {"id", "run", "user", "script", "args", "env", "cwd", "output", "error", "cpus", "cpu_ids",
                        "memory", "limit", "kill_wait", "tasks_max", "signal", "open_mode", "umask"}
    assert req["args"] == ["a b", "$HOME"]
    assert (req["output"], req["error"], req["cwd"]) == ("train-42.out", "42.err", "/home/alice/run")
    assert (req["limit"], req["kill_wait"], req["tasks_max"]) == (HOUR, 30, 512)
    assert req["signal"] == [int(signal.SIGUSR1), 90, "batch"]
    assert req["env"]["MELON_JOB_ID"] == "42"
    assert req["run"] == 0
    plain = launch.start_request(stored_job(), "node7", kill_wait=1, tasks_max=0)
    assert plain["error"] is None and plain["signal"] is None and plain["open_mode"] is None
    assert plain["umask"] == 0o022 and plain["env"]["SLURM_UMASK"] == "0022"  # a job kept without one
    private = launch.start_request(stored_job(umask=0o077), "node7", kill_wait=1, tasks_max=0)
    assert private["umask"] == 0o077 and private["env"]["SLURM_UMASK"] == private["env"]["MELON_UMASK"] == "0077"
    again = launch.start_request(stored_job(restarts=2), "node7", kill_wait=1, tasks_max=0)
    assert again["run"] == 2 and again["env"]["MELON_RESTART_COUNT"] == again["env"]["SLURM_RESTART_COUNT"] == "2"
    assert again["open_mode"] is None  # a requeued job's next run truncates its files, as in Slurm


@pytest.mark.parametrize(("options", "restarts", "mode"), [
    ({"open-mode": "append"}, 0, "append"), ({"open-mode": "a"}, 2, "append"), ({"open-mode": "truncate"}, 3, None),
    ({}, 0, None), ({}, 1, None),
])
def test_open_mode_follows_sbatch(options: dict, restarts: int, mode: str | None):
    req = launch.start_request(stored_job(slurm_options=options, restarts=restarts), "n", kill_wait=1, tasks_max=0)
    assert req["open_mode"] == mode and (req["env"].get("SLURM_OPEN_MODE") == "a") == (mode == "append")


def test_array_tasks_learn_their_arrays_range():
    env = launch.job_environment(stored_job(id=50, array_job_id=42, array_task_id=8, array_spec="0-16:4%2"), "n1")
    assert [env[f"SLURM_ARRAY_TASK_{k}"] for k in ("MIN", "MAX", "COUNT", "STEP")] == ["0", "16", "5", "4"]
    env = launch.job_environment(stored_job(id=50, array_job_id=42, array_task_id=3, array_spec="1,3,4"), "n1")
    assert [env[f"SLURM_ARRAY_TASK_{k}"] for k in ("MIN", "MAX", "COUNT", "STEP")] == ["1", "4", "3", "1"]
    assert env["SLURM_PROCID"] == env["SLURM_LOCALID"] == env["SLURM_NODEID"] == "0"
    assert env["SLURM_NODELIST"] == env["SLURM_JOB_NODELIST"] == "n1"


# ---- config -------------------------------------------------------------------------------------

def test_example_inventory_loads(tmp_path):
    folder = tmp_path / "site"
    (folder / "keys").mkdir(parents=True)
    (folder / "keys" / "id_ed25519").write_text("key")
    (folder / "keys" / "known_hosts").write_text("")
    (folder / "keys" / "carol").write_text("key")
    (folder / "tls").mkdir()
    (folder / "tls" / "melond.crt").write_text("cert")
    (folder / "tls" / "melond.key").write_text("key")
    shutil.copy(EXAMPLE, folder / "inventory.toml")
    inv = config.load(str(folder / "inventory.toml"))
    assert inv.operators == ["alice"]
    assert inv.partition_names() == ["debug", "long"]
    assert inv.default_partition() == "debug"
    debug = inv.partition("debug")
    assert (debug.max_time, debug.default_time, debug.default_mem_per_cpu) == (86400, HOUR, 2048)
    assert inv.partition("long").max_time == 7 * 86400
    assert (inv.kill_wait, inv.tasks_max, inv.max_batch_requeue, inv.return_to_service) == (30, 8192, 5, 1)
    nodes = inv.node_table()
    assert list(nodes) == ["node1", "node2", "node3", "lab1", "local"]
    assert [link for link in inv.links() if "@" in link] == ["alice@lab1", "carol@lab1"]
    assert inv.links()["carol@lab1"][2].user == "cs123" and inv.links()["alice@lab1"][2].user == "alice"
    assert nodes["node1"].identity_file == str(folder / "keys" / "id_ed25519")  # relative to the file
    assert (nodes["node1"].host, nodes["node1"].user, nodes["node1"].partition) == ("10.0.0.11", "root", "debug")
    assert (nodes["node2"].partition, nodes["node2"].cpus, nodes["node2"].memory) == ("long", 64, 200 * 1024)
    assert nodes["node3"].user == "alice" and not nodes["local"].remote
    assert (inv.tls.cert, inv.tls.key) == (str(folder / "tls" / "melond.crt"), str(folder / "tls" / "melond.key"))
    (folder / "keys" / "id_ed25519").unlink()
    with pytest.raises(MelonError, match="identity_file"):
        config.load(str(folder / "inventory.toml"))


def test_no_inventory_is_one_local_node():
    inv = config.load(None)
    assert inv.partition_names() == [config.DEFAULT_PARTITION]
    assert inv.default_partition() == config.DEFAULT_PARTITION
    assert list(inv.node_table()) == [config.LOCAL_NODE]
    assert inv.node_table()[config.LOCAL_NODE].partition == config.DEFAULT_PARTITION


def test_first_partition_is_the_default_when_none_is_marked(tmp_path):
    path = tmp_path / "inv.toml"
    path.write_text('[partitions.b]\nmax_time = "10"\n[partitions.a]\n')
    inv = config.load(str(path))
    assert inv.default_partition() == "b"
    assert inv.partition("b").max_time == 600
    assert inv.node_table()["local"].partition == "b"


BAD_INVENTORIES = {
    "duplicate key": ("kill_wait = 1\nkill_wait = 2\n", "not valid TOML"),
    "unknown top-level field": ("operator = ['alice']\n", "operator"),
    "unknown partition field": ("[partitions.debug]\nmaxtime = '1:00:00'\n", "partitions.debug.maxtime"),
    "bad time": ("[partitions.debug]\nmax_time = 'soon'\n", "soon"),
    "bad memory size": ("[nodes.local]\nmemory = 'lots'\n", "lots"),
    "negative kill_wait": ("kill_wait = -1\n", "kill_wait"),
    "return_to_service 2": ("return_to_service = 2\n", "return_to_service: Input should be 0 or 1"),
    "negative max_batch_requeue": ("max_batch_requeue = -1\n", "max_batch_requeue"),
    "zero cpus": ("[nodes.local]\ncpus = 0\n", "nodes.local.cpus"),
    "node in unknown partition": ("[partitions.debug]\n[nodes.n1]\npartition = 'gpu'\n", "nodes.n1.partition"),
}


@pytest.mark.parametrize("text, words", BAD_INVENTORIES.values(), ids=BAD_INVENTORIES.keys())
def test_bad_inventory_is_refused_naming_the_file(tmp_path, text, words):
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    with pytest.raises(MelonError) as err:
        config.load(str(path))
    assert str(path) in str(err.value)
    assert words in str(err.value)


def test_missing_inventory_names_the_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(MelonError, match="no such file") as err:
        config.load(str(path))
    assert str(path) in str(err.value)


def test_node_in_unknown_partition_without_partition_tables(tmp_path):
    path = tmp_path / "inventory.toml"
    path.write_text("[nodes.local]\npartition = 'lcoal'\n")
    with pytest.raises(MelonError, match="nodes.local.partition"):
        config.load(str(path))


# ---- states -------------------------------------------------------------------------------------

@pytest.mark.parametrize("result, state", [
    ({"reason": "exited", "exit_code": 0, "signal": None}, State.COMPLETED),
    ({"reason": "exited", "exit_code": 1, "signal": None}, State.FAILED),
    ({"reason": "exited", "exit_code": None, "signal": 9}, State.FAILED),
    ({"exit_code": 0}, State.COMPLETED),
    *(({"reason": reason, "exit_code": 0}, state) for reason, state in END_REASONS.items()),
])
def test_end_state(result, state):
    assert end_state(result) is state


def test_parse_states():
    assert parse_states("pd, R") == {State.PENDING, State.RUNNING}
    assert parse_states("timeout,CA") == {State.TIMEOUT, State.CANCELLED}
    assert parse_states("all") == set(State)
    with pytest.raises(ValueError, match="PD"):
        parse_states("PENDNG")


# ---- errors -------------------------------------------------------------------------------------

def _all_error_types(cls=MelonError):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_error_types(sub)


@pytest.mark.parametrize("cls", [
    cls
    for cls in _all_error_types()
], ids=lambda cls: cls.__name__)
def test_from_wire_rebuilds_each_error_type(cls):
    """Each error comes back as the class its code names: itself, or, for a refinement that
    keeps its parent's code (every parse error is a 400 bad_request), that parent."""
    sent = cls("what went wrong")
    back = errors.from_wire(sent.to_wire(), cls.status)
    assert type(back) is errors.ERRORS[cls.code] and isinstance(sent, type(back))
    assert str(back) == "what went wrong"
    assert back.code == cls.code


def test_every_code_names_one_class():
    """A class with a code of its own is the one the wire rebuilds for that code."""
    own = [cls for cls in _all_error_types() if "code" in vars(cls)]
    assert len({cls.code for cls in own}) == len(own)
    assert all(errors.ERRORS[cls.code] is cls for cls in own)


@pytest.mark.parametrize("cls", [SpecError, RelError, DirectiveError, TokenError], ids=lambda cls: cls.__name__)
def test_every_parse_error_is_a_melon_error_and_a_400(cls):
    assert issubclass(cls, errors.ParseError) and issubclass(cls, errors.MelonError) and cls.status == 400


@pytest.mark.parametrize("cls", [errors.NodeBadRequest, errors.NoSuchUser, errors.NoSuchJob, errors.LaunchFailed,
                                 errors.NoOutput])
def test_a_node_error_code_comes_back_as_its_own_exception(cls):
    """The helper's codes are one enumeration (remote.protocol.ErrorCode) on both ends."""
    exc = errors.node_error("node3", {"code": cls.node_code, "message": "no"})
    assert type(exc) is cls and str(exc) == "node node3: no"
    assert type(errors.node_error("node3", {"code": "gremlins"})) is errors.NodeRequestFailed


def test_from_wire_without_a_known_code_or_body():
    unknown = errors.from_wire({"error": {"code": "gremlins", "message": "odd"}}, 418)
    assert type(unknown) is MelonError and str(unknown) == "odd"
    no_body = errors.from_wire({"detail": "x"}, 502)
    assert type(no_body) is errors.Internal and "502" in str(no_body)
    assert type(errors.from_wire("not a dict", 500)) is errors.Internal


def test_other_users_see_squeues_fields_and_only_the_events_the_list_shows() -> None:
    owner, other, operator = Caller("alice", 1001), Caller("bob", 1002), Caller("carol", 1003, operator=True)
    anyone = Caller("anonymous", -1)
    assert policy.withheld(owner, "alice") == frozenset() == policy.withheld(operator, "alice")
    for viewer in (other, anyone):
        hidden = policy.withheld(viewer, "alice")
        assert {"chdir", "script_args", "comment", "mail_user", "output_path", "error_path"} <= hidden
        assert not hidden & {"id", "name", "user", "state", "reason", "partition", "node", "time_limit", "cpus",
                             "memory", "priority", "submit_time", "start_time", "end_time"}
    assert not policy.sees_all_of(Caller("anonymous", -1), "anonymous")  # the open list's reader owns nothing
    assert policy.sees_event(other, "alice", "ended") and policy.sees_event(other, "alice", "extended")
    for note in ("extension_requested", "extension_request_approved", "notified"):
        assert not policy.sees_event(other, "alice", note) and policy.sees_event(owner, "alice", note)
        assert policy.sees_event(operator, "alice", note)


def test_a_shaped_jobs_environment_counts_its_tasks_and_cpus() -> None:
    """-n 4 -c 2 on one node: Slurm's batch step sees 8 CPUs on the node and 2 per task."""
    env = launch.job_environment(stored_job(cpus=8, ntasks=4, cpus_per_task=2, nodes_min=1, distribution="cyclic"), "n1")
    assert {k: env[k] for k in ("SLURM_NTASKS", "SLURM_TASKS_PER_NODE", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE",
                                "SLURM_JOB_CPUS_PER_NODE", "MELON_CPUS_PER_TASK", "SLURM_DISTRIBUTION")} == {
        "SLURM_NTASKS": "4", "SLURM_TASKS_PER_NODE": "4", "SLURM_CPUS_PER_TASK": "2", "SLURM_CPUS_ON_NODE": "8",
        "SLURM_JOB_CPUS_PER_NODE": "8", "MELON_CPUS_PER_TASK": "2", "SLURM_DISTRIBUTION": "cyclic"}


def test_the_start_request_names_the_cpus_the_job_is_pinned_to() -> None:
    assert launch.start_request(stored_job(cpu_ids="0-1,4"), "n1", kill_wait=30, tasks_max=0)["cpu_ids"] == [0, 1, 4]
    assert launch.start_request(stored_job(), "n1", kill_wait=30, tasks_max=0)["cpu_ids"] is None
