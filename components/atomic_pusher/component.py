"""An atomic filesystem Pusher for TF Serving.

TFX's own Pusher copies file by file into ``<base>/<version>/``, so a model server polling the base
path can see a half-written version. This one copies into a hidden temporary folder beside it and
renames it into place (atomic on one filesystem), with a version strictly greater than any already
there, so TF Serving (or msrec's server) only ever sees complete versions, in order. A push killed
midway leaves its hidden folder behind; the next push removes such leftovers.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any

from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

log = logging.getLogger(__name__)


def next_version(base_dir: str) -> int:
    existing = [int(d) for d in os.listdir(base_dir) if d.isdigit()] if os.path.isdir(base_dir) else []
    return max([int(time.time())] + [v + 1 for v in existing])


STAGING_PREFIX = ".staging-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_staging(base_dir: str) -> list[str]:
    """Remove the staging folders of pushes that died (their process is gone, or it is this one:
    a push of this process that is not running now failed); returns their names."""
    removed = []
    for name in sorted(os.listdir(base_dir)):
        if not name.startswith(STAGING_PREFIX):
            continue
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue  # a push in progress in another process
        shutil.rmtree(os.path.join(base_dir, name), ignore_errors=True)
        removed.append(name)
    return removed


def push_atomically(model_dir: str, base_dir: str) -> tuple[int, str]:
    """Copy ``model_dir`` to ``base_dir/<version>`` atomically; returns (version, path)."""
    os.makedirs(base_dir, exist_ok=True)
    for name in remove_stale_staging(base_dir):
        log.warning("removed %s, left in %s by a push that did not finish", name, base_dir)
    version = next_version(base_dir)
    staging = os.path.join(base_dir, f"{STAGING_PREFIX}{version}-{os.getpid()}")
    shutil.copytree(model_dir, staging)
    final = os.path.join(base_dir, str(version))
    os.rename(staging, final)
    return version, final


class AtomicPusherSpec(ComponentSpec):
    PARAMETERS = {"base_directory": ExecutionParameter(type=str)}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class Executor(tfx_pusher_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        version, path = push_atomically(self.GetModelPath(input_dict), exec_properties["base_directory"])
        log.info("pushed version %d to %s", version, path)
        self._MarkPushed(pushed, pushed_destination=path, pushed_version=str(version))


class AtomicPusher(base_component.BaseComponent):
    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel, base_directory: str):
        super().__init__(spec=AtomicPusherSpec(
            model=model, model_blessing=model_blessing, base_directory=base_directory,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
