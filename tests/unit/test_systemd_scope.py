"""When a job's systemd scope counts as ready (pure: from /proc/PID/cgroup lines)."""
from melon_remote.scope import SystemdScope

V1 = {"memory", "cpu", "cpuacct", "pids", "freezer", "name=systemd"}


def scope(memory: int = 64 << 20, cpus: int = 1, tasks: int = 64) -> SystemdScope:
    return SystemdScope("5", cpus, memory, tasks, "abc")


def test_v1_waits_for_every_hierarchy_that_enforces_a_limit():
    s = scope()
    unit = "/melon.slice/melon-job-5.scope"
    assert not s._limited_everywhere({"name=systemd": unit}, V1)
    assert not s._limited_everywhere({"name=systemd": unit, "memory": unit, "pids": unit}, V1)  # cpu missing
    assert s._limited_everywhere({"name=systemd": unit, "memory": unit, "pids": unit, "cpu": unit}, V1)
    assert s._limited_everywhere({"memory": unit, "pids": unit, "cpu,cpuacct": unit}, V1 | {"cpu,cpuacct"})


def test_only_the_limits_asked_for_are_waited_on():
    s = scope(memory=0, cpus=0, tasks=0)
    assert s._limited_everywhere({"name=systemd": "/melon.slice/melon-job-5.scope"}, V1)


def test_hybrid_mode_still_waits_for_v1_controllers_and_pure_v2_does_not():
    s = scope()
    unit = "/melon.slice/melon-job-5.scope"
    assert not s._limited_everywhere({"": unit, "name=systemd": unit}, V1 | {""})  # hybrid
    assert s._limited_everywhere({"": unit}, {""})  # pure v2
