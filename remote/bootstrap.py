"""Getting the helper into a bare `python3` on a node (Mitogen-style first stage).

melond runs `python3 -c FIRST_STAGE SPOOL`. The first stage prints a ready
marker, reads a length line and exactly that many bytes (a zlib-compressed JSON
list of (module, source) pairs) from fd 0 without buffering past them, installs
an import hook that serves those sources and hands over to `melon_remote.helper.main`,
which then speaks frames on the same stdin/stdout. Nothing is written to the
node's disk but the spool.
"""
from __future__ import annotations

import functools
import json
import pathlib
import zlib

READY = b"MELON-BOOT-1\n"
SHIPPED = tuple(f"melon_remote.{name}" for name in (
    "marks", "protocol", "wire", "spool", "fence", "cgroup", "cgroupfs", "cpuset", "devices", "gpus", "scope",
    "delegated", "subtree", "limits", "sdbus", "spawn", "steps", "job", "supervisor", "asks", "output", "holder", "relay", "service", "helper"))

# Kept tiny and free of quotes that a remote shell would mangle; unbuffered reads on fd 0 so no
# byte meant for the helper is swallowed by a Python buffer. The shipped sources are served by an
# import hook, so each module loads only when imported: the helper forks its supervisor before it
# imports asyncio (see remote/helper.py).
FIRST_STAGE = (
    "import os,sys,zlib,json,importlib.util as u\n"
    "def rd(n):\n"
    " b=b''\n"
    " while len(b)<n:\n"
    "  c=os.read(0,n-len(b))\n"
    "  if not c:sys.exit('melon bootstrap: EOF while reading the helper')\n"
    "  b+=c\n"
    " return b\n"
    "os.write(1,b'MELON-BOOT-1\\n')\n"
    "h=b''\n"
    "while not h.endswith(b'\\n'):h+=rd(1)\n"
    "S=dict(json.loads(zlib.decompress(rd(int(h)))))\n"
    "class F:\n"
    " def find_spec(s,n,p,t=None):\n"
    "  if n=='melon_remote' or n in S:return u.spec_from_loader(n,s,is_package=n=='melon_remote')\n"
    " def create_module(s,sp):return None\n"
    " def exec_module(s,m):\n"
    "  if m.__name__ in S:exec(compile(S[m.__name__],'<melon:'+m.__name__+'>','exec'),m.__dict__)\n"
    "sys.meta_path.insert(0,F())\n"
    "import melon_remote.helper\n"
    "melon_remote.helper.main(sys.argv[1:])\n"
)


@functools.lru_cache(maxsize=1)
def payload() -> bytes:
    """The length line and compressed module sources that follow the ready marker: made once,
    sent to every node (compressing them for each of a thousand nodes took seconds)."""
    here = pathlib.Path(__file__).parent
    mods = [(name, (here / f"{name.split('.')[1]}.py").read_text()) for name in SHIPPED]
    body = zlib.compress(json.dumps(mods).encode(), 6)
    return str(len(body)).encode() + b"\n" + body
