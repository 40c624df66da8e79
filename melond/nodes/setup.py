"""`melond --print-node-setup NODE`: the one-time root commands that give a node reached as an
account that is not root per-job limits, from what the node's probe found. Pure: the probe's
facts in, text out.

Two ways, as remote/delegated.py and remote/subtree.py use them: on cgroup v2 with systemd, the
account's own systemd manager (lingering, the memory controller delegated); elsewhere, or where
user managers may not linger, a cgroup subtree root prepares for the account. On v1 that is a
folder per hierarchy; on v2 the account's logins must also start inside it, which a PAM session
hook does (it also remakes the subtree after a boot, when cgroupfs starts empty).
"""
from __future__ import annotations

DROP_IN = "/etc/systemd/system/user@.service.d/melon-delegate.conf"
CGROUP = "/sys/fs/cgroup"
HOOK = "/usr/local/libexec/melon-cgroup-login"
ACCOUNTS = "/etc/melon/cgroup-accounts"
PAM_SSHD = "/etc/pam.d/sshd"
ACCOUNT_BACKENDS = ("systemd-user", "cgroup-v2-user", "cgroup-v1-user")

# Run by pam_exec as root when an SSH session opens: an account listed in ACCOUNTS gets its
# subtree (made when missing, as after a boot) and the session's sshd process (the shell's
# parent-to-be, as pam_systemd registers it) moves into the subtree's `login` leaf.
HOOK_SCRIPT = f"""#!/bin/sh
# Melon: start the SSH sessions of the accounts listed in {ACCOUNTS} inside their own cgroup
# subtree, where melond's node supervisor can give each job its limits (melond --print-node-setup).
[ "$PAM_TYPE" = open_session ] || exit 0
grep -qxF -- "$PAM_USER" {ACCOUNTS} 2>/dev/null || exit 0
t={CGROUP}/melon/user-$PAM_USER
if [ ! -d "$t/login" ]; then
    mkdir -p "$t/login" || exit 0
    for d in {CGROUP} {CGROUP}/melon "$t"; do
        for c in cpu memory pids; do echo "+$c" > "$d/cgroup.subtree_control"; done 2>/dev/null
    done
    chown "$PAM_USER" "$t" "$t/cgroup.procs" "$t/cgroup.subtree_control" "$t/cgroup.threads"
fi
echo "$PPID" > "$t/login/cgroup.procs"
"""


def setup_text(node: str, info: dict) -> tuple[str, bool]:
    """What to run as root on the node (or why nothing helps), and whether the node is ready as it is."""
    user = info.get("user")
    if info.get("uid") == 0:
        return f"# node {node}: melond logs in as root; jobs get their limits with no setup ({info.get('backend')}).", True
    facts = info.get("delegation") or {}
    head = f"# node {node}: melond logs in as {user}, not root; its jobs run as {user}."
    backend = info.get("backend")
    if backend in ACCOUNT_BACKENDS:
        return f"{head}\n# Ready: {_ready(backend, user, facts)} ({backend}).", True
    tree = facts.get("subtree") or {}
    if "v2" in tree:
        if not facts.get("systemd"):
            return f"{head}\n{_subtree_v2(node, user, 'Run once')}", False
        return (f"{head}\n{_user_manager(node, user, facts)}\n\n"
                f"{_subtree_v2(node, user, 'Or, where user managers may not linger, run once')}"), False
    if "v1" in tree and "memory" in tree["v1"].get("hierarchies", []):
        return f"{head}\n{_subtree_v1(node, user, tree['v1']['hierarchies'], bool(facts.get('systemd')))}", False
    return (f"{head}\n# This node mounts no cgroup memory controller: its jobs run without limits, whoever "
            f"melond logs in as.", False)


def _ready(backend: str, user: str, facts: dict) -> str:
    if backend == "systemd-user":
        return f"{user}'s systemd manager delegates {' '.join(facts.get('delegated', []))}"
    return f"a cgroup subtree is prepared for {user}"


def _user_manager(node: str, user: str, facts: dict) -> str:
    commands = []
    if "memory" not in facts.get("delegated", []):
        commands += [f"mkdir -p {DROP_IN.rsplit('/', 1)[0]}",
                     f"printf '[Service]\\nDelegate=cpu memory pids\\n' > {DROP_IN}", "systemctl daemon-reload"]
    if not facts.get("linger"):
        commands.append(f"loginctl enable-linger {user}")
    why = (f"# Run once, as root on {node}, so that {user}'s own systemd manager runs without a login (lingering)\n"
           f"# and is handed the cpu, memory and pids controllers; melond then gives each job its own cgroup in a\n"
           f"# scope that manager delegates (limits = \"systemd-user\"):")
    return "\n".join([why, *commands])


def _subtree_v2(node: str, user: str, lead: str) -> str:
    why = (f"# {lead}, as root on {node}: a cgroup subtree for {user}\n"
           f"# ({CGROUP}/melon/user-{user}), and a PAM session hook that starts {user}'s SSH logins inside it\n"
           f"# (cgroup v2 lets nothing move into a subtree from outside) and remakes it after a boot; melond\n"
           f"# then gives each job its own cgroup there (limits = \"cgroup-v2-user\"). The hook reaches new\n"
           f"# logins only: melond's next connection.")
    return "\n".join([why, f"install -d {HOOK.rsplit('/', 1)[0]} {ACCOUNTS.rsplit('/', 1)[0]}",
                      f"cat > {HOOK} <<'EOF'\n{HOOK_SCRIPT}EOF", f"chmod 755 {HOOK}",
                      f"grep -qxF {user} {ACCOUNTS} 2>/dev/null || echo {user} >> {ACCOUNTS}",
                      f"grep -q {HOOK} {PAM_SSHD} || echo 'session optional pam_exec.so quiet {HOOK}' >> {PAM_SSHD}"])


def _subtree_v1(node: str, user: str, hierarchies: list[str], systemd: bool) -> str:
    """A folder per hierarchy, the account's: made by a oneshot unit at each boot where systemd
    runs (cgroupfs starts empty), else by commands to run at each boot. (systemd-tmpfiles will
    not hand root's cgroup.procs in a folder the account owns: an "unsafe path transition".)"""
    dirs = [f"{CGROUP}/{h}/melon/user-{user}" for h in hierarchies]
    steps = [(f"mkdir -p {d}", f"chown {user} {d} {d}/cgroup.procs {d}/tasks") for d in dirs]
    why = (f"# Run once, as root on {node}: a cgroup folder for {user} in each hierarchy\n"
           f"# ({', '.join(hierarchies)}), where melond gives each job its own cgroups\n"
           f"# (limits = \"cgroup-v1-user\")")
    if not systemd:
        return "\n".join([why + ". cgroupfs starts empty at each boot: run these from a boot script too.",
                          *(f"{make} && {own}" for make, own in steps)])
    unit = f"/etc/systemd/system/melon-cgroup-{user}.service"
    body = "\n".join(["[Unit]", f"Description=Melon: {user}'s cgroup subtree, where melond limits {user}'s jobs",
                      "[Service]", "Type=oneshot", "RemainAfterExit=yes",
                      *(f"ExecStart=/bin/{step}" for pair in steps for step in pair),
                      "[Install]", "WantedBy=multi-user.target"])
    return "\n".join([why + ", made again by a unit at each boot (cgroupfs starts empty):",
                      f"cat > {unit} <<'EOF'\n{body}\nEOF", "systemctl daemon-reload",
                      f"systemctl enable --now {unit.rsplit('/', 1)[1]}"])
