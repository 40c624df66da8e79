"""The README's pictures of the web UI, taken from a real melond with three local nodes and a
few real jobs, in Debian's chromium through Playwright: `make screenshots`.

Writes docs/img/ui-jobs.png, ui-job.png, ui-timeline.png and ui-phone.png.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = REPO / "docs" / "img"
INVENTORY = """
operators = ["root"]
[partitions.main]
default = true
max_time = "1-00:00:00"
[defaults]
partition = "main"
[nodes.node1]
cpus = 2
spool = "{state}/spool1"
[nodes.node2]
cpus = 2
spool = "{state}/spool2"
[nodes.node3]
cpus = 2
spool = "{state}/spool3"
"""


def run(*args: str, env: dict) -> str:
    r = subprocess.run([str(BIN / args[0]), *args[1:]], env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    root = Path(tempfile.mkdtemp(prefix="mshots-", dir="/tmp"))
    state, work = root / "state", root / "work"
    work.mkdir()
    (root / "inventory.toml").write_text(INVENTORY.format(state=state))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(state), "--inventory", str(root / "inventory.toml"),
                             "--port", str(port), "--kill-wait", "1"], stderr=open(root / "melond.log", "wb"))
    env = {**os.environ, "MELON_API": f"unix:{state}/melond.sock"}
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"melond exited: {(root / 'melond.log').read_text()[-2000:]}")
            if (state / "melond.sock").exists() and "down" not in run("minfo", env=env):
                break
            time.sleep(0.1)
        os.chdir(work)
        names = [("align", "2:00:00", 2), ("train", "6:00:00", 2), ("simulate", "3:30:00", 1), ("post", "1:00:00", 1)]
        ids = [run("mbatch", "--parsable", "-J", n, "-t", t, "-c", str(c), "--wrap",
                   "for i in $(seq 1 100000); do echo step $i; sleep 1; done", env=env) for n, t, c in names]
        for n, t, c in [("train", "8:00:00", 2), ("sweep", "2:00:00", 2), ("report", "30:00", 1)]:
            run("mbatch", "--parsable", "-J", n, "-t", t, "-c", str(c), "--wrap", "sleep 100000", env=env)
        run("mbatch", "--parsable", "-J", "grid", "-t", "1:00:00", "--array", "0-15%4", "-H", "--wrap", "true", env=env)
        run("mextend", "-j", ids[0], "-t", "+30:00", env=env)
        token = run("mtoken", "create", env=env)
        time.sleep(3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(url + "/")
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#job-table tbody tr").first).to_be_visible()
            page.screenshot(path=str(OUT / "ui-jobs.png"))
            page.goto(f"{url}/#job/{ids[1]}")
            expect(page.locator("#job-output")).to_contain_text("step")
            page.get_by_label("Add time").fill("+2:00:00")
            page.get_by_role("button", name="Check").click()
            expect(page.locator("#verdict")).to_contain_text("Would be")
            page.screenshot(path=str(OUT / "ui-job.png"), full_page=True)
            page.goto(f"{url}/#timeline")
            expect(page.locator("#gantt .bar rect").first).to_be_visible()
            page.screenshot(path=str(OUT / "ui-timeline.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 760}, device_scale_factor=2)
            phone.context.add_cookies(page.context.cookies())
            phone.goto(url + "/")
            expect(phone.locator("#job-table tbody tr").first).to_be_visible()
            phone.screenshot(path=str(OUT / "ui-phone.png"))
            browser.close()
        for name in ("ui-jobs.png", "ui-job.png", "ui-timeline.png", "ui-phone.png"):
            print(OUT / name)
    finally:
        subprocess.run([str(BIN / "mcancel"), "-u", "root"], env=env, capture_output=True)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
