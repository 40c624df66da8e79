"""Getting the helper into a bare `python3` on a node (Mitogen-style first stage).

melond runs `python3 -c FIRST_STAGE SPOOL`. The first stage prints a ready
marker, reads a length line and exactly that many bytes (a zlib-compressed JSON
list of (module, source) pairs) from fd 0 without buffering past them, installs
the modules and hands over to `remote.helper.main`, which then speaks frames on
the same stdin/stdout. Nothing is written to the node's disk but the spool.
"""
from __future__ import annotations

import json
import pathlib
import zlib

READY = b"MELON-BOOT-1\n"
SHIPPED = ("remote.wire", "remote.spool", "remote.limits", "remote.monitor", "remote.helper")

# Kept tiny and free of quotes that a remote shell would mangle; unbuffered reads on fd 0
# so no byte meant for the helper is swallowed by a Python buffer.
FIRST_STAGE = (
    "import os,sys,zlib,json,types\n"
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
    "p=types.ModuleType('remote');p.__path__=[];sys.modules['remote']=p\n"
    "for n,s in json.loads(zlib.decompress(rd(int(h)))):\n"
    " m=types.ModuleType(n);m.__file__='<melon:'+n+'>';sys.modules[n]=m;setattr(p,n.split('.')[1],m)\n"
    " exec(compile(s,m.__file__,'exec'),m.__dict__)\n"
    "sys.modules['remote.helper'].main(sys.argv[1:])\n"
)


def payload() -> bytes:
    """The length line and compressed module sources that follow the ready marker."""
    here = pathlib.Path(__file__).parent
    mods = [(name, (here / f"{name.split('.')[1]}.py").read_text()) for name in SHIPPED]
    body = zlib.compress(json.dumps(mods).encode(), 6)
    return str(len(body)).encode() + b"\n" + body
