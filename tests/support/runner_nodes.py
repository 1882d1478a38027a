"""Tiny TFX components for the local runner's tests: each records where and when it ran in a folder,
can wait until another one has started (proof that both ran at the same time), and can fail.
(No postponed annotations: TFX reads the component's type hints as objects.)"""

import json
import os
import time

from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component

MEET_TIMEOUT_S = 300.0  # far beyond any start-up: reaching it means the two never ran together


class StepFailed(RuntimeError):
    pass


def started(folder: str, name: str) -> dict:
    with open(os.path.join(folder, f"{name}.started")) as fh:
        return json.load(fh)


def finished(folder: str, name: str) -> bool:
    return os.path.exists(os.path.join(folder, f"{name}.finished"))


@component
def Step(name: Parameter[str], folder: Parameter[str], main_pid: Parameter[int], meet: Parameter[str] = "",
         fail: Parameter[str] = ""):
    """``meet``: wait until that step has started; ``fail``: "always" raises StepFailed, "in_worker"
    raises it outside the process that runs the pipeline, "exit_in_worker" ends that worker process."""
    with open(os.path.join(folder, f"{name}.started"), "w") as fh:
        json.dump({"pid": os.getpid(), "time": time.time()}, fh)
    deadline = time.monotonic() + MEET_TIMEOUT_S
    while meet and not os.path.exists(os.path.join(folder, f"{meet}.started")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} waited for {meet} to start in vain")
        time.sleep(0.05)
    in_worker = os.getpid() != main_pid
    if fail == "always" or (fail == "in_worker" and in_worker):
        raise StepFailed(f"{name} failed")
    if fail == "exit_in_worker" and in_worker:
        os._exit(3)
    with open(os.path.join(folder, f"{name}.finished"), "w") as fh:
        fh.write("")
