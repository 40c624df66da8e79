"""Replace pip's console-script launchers in a venv with ones that import only the command.

pip's launcher runs `import re` before the command starts: 4-8 ms of a CLI whose whole run is
about 10 ms. These do what it does otherwise (call the entry point, exit with its result). The
fast commands (those built on cli.args) also start Python with -S: `site` costs 2.4 ms and their
common path needs only the standard library and this package, whose folder the launcher puts on
sys.path itself; cli.args runs `site.main()` before it loads rich-click for help or completion.
Usage: python scripts/write_launchers.py VENV
"""
from __future__ import annotations

import os
import sys
import tomllib

FAST = {"mbatch", "mqueue", "mcancel", "mextend", "mshow", "mhold", "mrelease", "macct", "melon-slurm"}
LAUNCHER = """#!{python}
import sys
from {module} import {function}
sys.exit({function}())
"""
FAST_LAUNCHER = """#!{python} -S
import sys
sys.path.insert(0, {root!r})
from {module} import {function}
sys.exit({function}())
"""


def main(venv: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    python = os.path.join(os.path.abspath(venv), "bin", "python3")
    root = os.path.join(os.path.abspath(venv), "melon-src")  # the packages by their installed names (setup.sh)
    for name, target in scripts.items():
        module, function = target.split(":")
        text = (FAST_LAUNCHER if name in FAST else LAUNCHER).format(python=python, module=module,
                                                                   function=function, root=root)
        path = os.path.join(venv, "bin", name)
        with open(path + ".new", "w") as f:
            f.write(text)
        os.chmod(path + ".new", 0o755)
        os.replace(path + ".new", path)


if __name__ == "__main__":
    main(sys.argv[1])
