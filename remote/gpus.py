"""A node's GPUs as its drivers report them, for nodes whose inventory lists none.

Standard library only: streamed to compute nodes with the helper. `nvidia-smi` is asked once per
connection (its documented CSV queries: index, uuid, name, pci.bus_id; and the compute processes
on each GPU); the device file of each GPU is the one its driver names in
/proc/driver/nvidia/gpus/<bus id>/information ("Device Minor"), else /dev/nvidia<index>. Without
NVIDIA's, AMD GPUs are read from /sys/class/drm: each render node whose PCI vendor is AMD's
(0x1002) is a GPU, its file /dev/dri/renderD<N>, in the order of N (amdgpu's enumeration). A
node with neither has none.
"""
from __future__ import annotations

import os
import shutil
import subprocess

QUERY = ["--query-gpu=index,uuid,name,pci.bus_id", "--format=csv,noheader"]
USAGE = ["--query-gpu=index,utilization.gpu,memory.used,pci.bus_id", "--format=csv,noheader,nounits"]
DRM = "/sys/class/drm"
AMD = "0x1002"
APPS = ["--query-compute-apps=gpu_bus_id,pid", "--format=csv,noheader"]
TIMEOUT = 15.0  # seconds: a hung driver must not hold the probe


def _smi(args: list[str]) -> list[list[str]] | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        r = subprocess.run([smi, *args], capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return [[cell.strip() for cell in line.split(",")] for line in r.stdout.splitlines() if line.strip()]


def _minor(bus_id: str) -> int | None:
    """The driver's minor number of the GPU at `bus_id` (nvidia-smi's 00000000:3B:00.0; the
    driver's folder is named in lower case with a 4-digit domain: 0000:3b:00.0)."""
    parts = bus_id.lower().split(":")
    name = f"{parts[0][-4:]}:{parts[1]}:{parts[2]}" if len(parts) == 3 else bus_id.lower()
    try:
        with open(os.path.join("/proc/driver/nvidia/gpus", name, "information")) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "Device Minor" and value.strip().isdigit():
                    return int(value.strip())
    except OSError:
        pass
    return None


def model(name: str) -> str:
    """A GPU's type as Slurm's autodetection writes it: its name lower-cased, spaces as
    underscores, without the vendor's prefix (NVIDIA A100-SXM4-40GB: a100-sxm4-40gb)."""
    text = name.strip().lower().replace(" ", "_")
    for prefix in ("nvidia_", "tesla_", "geforce_", "amd_"):
        text = text.removeprefix(prefix)
    return text or "gpu"


def usage() -> list[dict]:
    """Each GPU's use now: index, utilization (percent), memory used (MiB) and the pids of the
    compute processes on it; none without nvidia-smi, or where a value is "[N/A]"."""
    rows = _smi(USAGE) or []
    busy = _busy() if rows else {}
    out = []
    for row in rows:
        if len(row) >= 3 and all(cell.isdigit() for cell in row[:3]):
            bus = row[3].lower() if len(row) > 3 else ""
            minor = _minor(row[3]) if len(row) > 3 else None
            out.append({"index": int(row[0]), "util": int(row[1]), "memory": int(row[2]), "busy": busy.get(bus, []),
                        "file": f"/dev/nvidia{int(row[0]) if minor is None else minor}"})
    return out


def _busy() -> dict[str, list[int]]:
    """The compute processes on each GPU, by its bus id (lower case)."""
    busy: dict[str, list[int]] = {}
    for bus, pid, *_ in (r for r in (_smi(APPS) or []) if len(r) >= 2):
        if pid.isdigit():
            busy.setdefault(bus.lower(), []).append(int(pid))
    return busy


def drm(root: str = DRM) -> list[dict]:
    """AMD GPUs from the kernel's DRM class: each render node (renderD128, ...) of an AMD device,
    typed by its product name where the driver gives one."""
    try:
        names = sorted((n for n in os.listdir(root) if n.startswith("renderD") and n[7:].isdigit()),
                       key=lambda n: int(n[7:]))
    except OSError:
        return []
    out = []
    for name in names:
        device = os.path.join(root, name, "device")
        if _read(os.path.join(device, "vendor")) != AMD:
            continue
        product = _read(os.path.join(device, "product_name"))
        out.append({"index": len(out), "uuid": _read(os.path.join(device, "unique_id")), "name": product or "amd",
                    "type": model(product) if product else "amd", "bus_id": os.path.basename(
                        os.path.realpath(device)), "file": f"/dev/dri/{name}", "busy": []})
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def detect() -> list[dict]:
    """The GPUs nvidia-smi reports, in its index order: index, uuid, name, type, bus id, device
    file, and the pids of compute processes on it (which melond did not start, if no job holds it);
    without nvidia-smi, the AMD GPUs the kernel lists (`drm`)."""
    rows = _smi(QUERY)
    if not rows:
        return drm()
    busy = _busy()
    out = []
    for row in rows:
        if len(row) < 4 or not row[0].isdigit():
            continue
        index, uuid, name, bus = int(row[0]), row[1], row[2], row[3]
        minor = _minor(bus)
        out.append({"index": index, "uuid": uuid, "name": name, "type": model(name), "bus_id": bus,
                    "file": f"/dev/nvidia{index if minor is None else minor}", "busy": busy.get(bus.lower(), [])})
    return out
