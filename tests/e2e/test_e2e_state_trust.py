"""What melond run as root refuses to trust: a state directory, database or lock file another user
made or may write, a symbolic link planted in their place, and input files (inventory, keys,
certificates) another user owns or may write. Real melond processes on real files."""
from __future__ import annotations

import os
import pwd
import signal
from pathlib import Path

import pytest

from conftest import Melon, is_root
from conftest import refused_in_one_line as refused
from conftest import refusing_melond as melond

pytestmark = pytest.mark.skipif(not is_root(), reason="these attacks are on melond run as root")

NOBODY = pwd.getpwnam("nobody").pw_uid


def planted_db(path: Path) -> None:
    """A database as a melond of another user would leave it, holding a job: root must not run it."""
    melon = Melon(path.parent.parent)
    melon.start()
    try:
        melon.submit("-H", "--wrap", f"touch {path.parent.parent}/pwned")
    finally:
        melon.stop(signal.SIGTERM)


def test_a_state_dir_another_user_owns_or_may_write_is_refused(short_tmp: Path) -> None:
    state = short_tmp / "state"
    state.mkdir(mode=0o755)
    os.chown(state, NOBODY, NOBODY)
    refused(melond("--state-dir", str(state)), str(state), "owned by nobody", f"chown root:root {state} && chmod 755")
    assert os.listdir(state) == [], "melond wrote into a directory it refused"
    os.chown(state, 0, 0)
    for mode, who in ((0o777, "other users"), (0o775, "its group"), (0o1777, "other users")):
        os.chmod(state, mode)
        refused(melond("--state-dir", str(state)), str(state), "may be written by", who, f"chmod 755 {state}")
    assert os.listdir(state) == []


def test_a_directory_above_the_state_dir_others_may_write_is_refused(short_tmp: Path) -> None:
    shared = short_tmp / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # not sticky: anyone may rename the state dir away and put theirs there
    refused(melond("--state-dir", str(shared / "state")), f"the directory {shared} on its way", "chmod go-w")
    assert not (shared / "state").exists()
    os.chmod(shared, 0o1777)  # sticky and root's, as /tmp: fine
    melon = Melon(shared)
    melon.start()
    melon.stop()


def test_a_planted_lock_file_link_does_not_truncate_roots_file(short_tmp: Path) -> None:
    victim = short_tmp / "victim"
    victim.write_text("root's precious data\n")
    state = short_tmp / "state"
    state.mkdir(mode=0o755)
    (state / "melond.lock").symlink_to(victim)
    refused(melond("--state-dir", str(state)), f"{state}/melond.lock is a symbolic link", "rm ")
    assert victim.read_text() == "root's precious data\n"
    assert not (state / "melon.db").exists()


def test_a_state_dir_that_is_a_link_is_refused(short_tmp: Path) -> None:
    real = short_tmp / "real"
    real.mkdir(mode=0o755)
    (short_tmp / "state").symlink_to(real)
    refused(melond("--state-dir", str(short_tmp / "state")), "is a symbolic link", str(real))
    assert os.listdir(real) == []


def test_a_database_another_user_wrote_is_refused_and_its_job_never_runs(short_tmp: Path) -> None:
    root = short_tmp / "victim"
    root.mkdir()
    state = root / "state"
    planted_db(state / "melon.db")  # then handed to another user, as if they had written it
    for path in (state, *state.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    refused(melond("--state-dir", str(state)), str(state), "owned by nobody")
    os.chown(state, 0, 0)  # the operator fixes the folder as told: the files inside are still theirs
    r = melond("--state-dir", str(state))
    refused(r, "owned by nobody")
    assert "melon.db" in r.stderr or "melond.lock" in r.stderr or "spool" in r.stderr
    for path in state.iterdir():
        if path.name != "melon.db":
            os.chown(path, 0, 0)
    refused(melond("--state-dir", str(state)), f"the database {state}/melon.db is owned by nobody", "backup")
    os.chown(state / "melon.db", 0, 0)
    wal = state / "melon.db-wal"
    wal.write_bytes(b"")
    os.chown(wal, NOBODY, NOBODY)  # another user's log would be replayed into the database
    refused(melond("--state-dir", str(state)), f"{wal} is owned by nobody")
    wal.unlink()
    (state / "melon.db").chmod(0o666)
    refused(melond("--state-dir", str(state)), f"{state}/melon.db may be written by its group and other users")
    assert not (root / "pwned").exists()


def test_the_database_and_its_log_files_are_roots_alone(melon: Melon) -> None:
    melon.submit("-H", "--wrap", "true")
    for name in ("melon.db", "melon.db-wal", "melon.db-shm", "melond.lock"):
        st = (melon.state / name).stat()
        assert st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0, (name, oct(st.st_mode))
    for job in melon.jobs():
        melon.run("mcancel", str(job["id"]))


def test_inputs_another_user_owns_or_may_write_are_refused(short_tmp: Path) -> None:
    conf = short_tmp / "conf"
    conf.mkdir()
    inventory = conf / "inventory.toml"
    key = conf / "id_test"
    key.write_text("not read before the check\n")
    key.chmod(0o600)
    inventory.write_text(f'[nodes.n1]\nhost = "127.0.0.1"\nidentity_file = "{key}"\n')
    state = ["--state-dir", str(short_tmp / "state")]
    os.chown(inventory, NOBODY, NOBODY)
    refused(melond("--inventory", str(inventory), *state), f"inventory {inventory} is owned by nobody",
            f"chown root {inventory}")
    os.chown(inventory, 0, 0)
    inventory.chmod(0o664)
    refused(melond("--inventory", str(inventory), *state), "written by its group", f"chmod go-w {inventory}")
    inventory.chmod(0o644)
    os.chown(key, NOBODY, NOBODY)
    refused(melond("--inventory", str(inventory), "--check", *state), "identity_file", f"{key} is owned by nobody")
    os.chown(key, 0, 0)
    conf.chmod(0o777)
    refused(melond("--inventory", str(inventory), *state), f"the directory {conf} on its way")
    conf.chmod(0o755)
    link = short_tmp / "inv-link.toml"
    link.symlink_to(inventory)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)  # a link another user may point anywhere
    refused(melond("--inventory", str(link), *state), "symbolic link", "owned by nobody")
    cert, tls_key = conf / "c.pem", conf / "k.pem"
    gen = melond("--gen-cert", str(conf / "tls"))
    assert gen.returncode == 0, gen.stderr
    os.rename(conf / "tls" / "melond.crt", cert)
    os.rename(conf / "tls" / "melond.key", tls_key)
    os.chown(cert, NOBODY, NOBODY)
    refused(melond("--port", "0", "--tls-cert", str(cert), "--tls-key", str(tls_key), *state),
            f"TLS certificate {cert} is owned by nobody")
    assert not (short_tmp / "state").exists()
