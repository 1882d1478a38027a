"""What a benchmark ran on: CPU model, cores, memory and the versions that matter, for its table."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Iterable

DEFAULT_PACKAGES = ("tensorflow", "tfx", "apache-beam", "grpcio", "protobuf", "tensorflow-serving-api", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def machine_info(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, object]:
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # the load average tells a reader whether other work shared the machine during the run
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return {"cpu": _cpu_model(), "cores": usable, "memory_gib": _memory_gib(), "load_avg_1m": load,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "versions": versions}


def format_machine(info: dict[str, object]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in dict(info["versions"]).items())  # type: ignore[arg-type]
    return (f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM, {info['os']}, "
            f"Python {info['python']}, load average {info['load_avg_1m']} at the end of the run\n"
            f"versions: {versions}")
