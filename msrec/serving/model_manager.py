"""Version lifecycle of the served models: discovery, load, warm-up, version policy, swap, unload.

A version moves START -> LOADING -> AVAILABLE -> UNLOADING -> END (the states GetModelStatus
reports). Requests lease an AVAILABLE version and hand it back when done; a version leaves
service by turning UNLOADING (no new leases) and is dropped only once its last lease is back, so
a swap never fails a request in flight. A newer version replaces an older one only after it is
AVAILABLE, and nothing is unloaded while none of the versions the policy wants serves yet: a
version that fails to load leaves the previous one serving, and under ``latest`` (on a restart or
a config reload too) the newest version that loads serves while the failed one is retried.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from typing import Iterator

from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_status_pb2

from msrec.serving.config import ModelConfig, ModelServerConfig, describe_policy, desired_versions, validate
from msrec.serving.errors import ConfigError, NotFound, shown
from msrec.serving.limits import RequestLimits
from msrec.serving.servable import LoadError, Servable

log = logging.getLogger("msrec.serving")

_State = get_model_status_pb2.ModelVersionStatus
START, LOADING, AVAILABLE, UNLOADING, END = (_State.START, _State.LOADING, _State.AVAILABLE,
                                             _State.UNLOADING, _State.END)


def state_name(state: int) -> str:
    return _State.State.Name(state)


@dataclasses.dataclass
class VersionRecord:
    version: int
    path: str
    state: int = START
    error_code: int = error_codes_pb2.OK
    error_message: str = ""
    attempts: int = 0  # failed load attempts so far
    gave_up: bool = False  # failed 1 + max_num_load_retries times: not tried again
    servable: Servable | None = None
    in_flight: int = 0
    warmup_replayed: int = 0


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: int
    error_code: int
    error_message: str
    warmup_replayed: int


class ModelManager:
    """The versions of one model name under one base path."""

    def __init__(self, config: ModelConfig, max_num_load_retries: int) -> None:
        self.name = config.name
        self.base_path = config.base_path
        self._policy = ModelConfig()
        self._policy.CopyFrom(config)
        self._labels: dict[str, int] = {}
        self._max_retries = max(0, max_num_load_retries)
        self._cond = threading.Condition()
        self._poll_lock = threading.Lock()  # one poll at a time (poll thread vs config reload)
        self._versions: dict[int, VersionRecord] = {}
        self._scan_problem: str | None = None
        self._closed = False  # set once unloaded for good: a late poll must not load it again

    # ---- request path -------------------------------------------------------------------------
    @contextlib.contextmanager
    def lease(self, version: int | None = None, label: str | None = None) -> Iterator[Servable]:
        """The servable a request names (or the newest AVAILABLE one), held until the block ends."""
        with self._cond:
            record = self._resolve(version, label)
            record.in_flight += 1
            servable = record.servable  # an AVAILABLE record always holds its servable
        try:
            yield servable
        finally:
            with self._cond:
                record.in_flight -= 1
                if record.in_flight == 0:
                    self._cond.notify_all()

    def _resolve(self, version: int | None, label: str | None) -> VersionRecord:
        available = sorted(v for v, r in self._versions.items() if r.state == AVAILABLE)
        if label:
            if label not in self._labels:
                raise NotFound(f"model {self.name!r} has no version label {shown(label)}; its labels: "
                               f"{self._labels or 'none'}")
            version = self._labels[label]
            record = self._versions.get(version)
            if record is None or record.state != AVAILABLE:
                raise NotFound(f"label {shown(label)} of model {self.name!r} points to version {version}, "
                               f"which is not available ({self._describe(version)}); available "
                               f"versions: {available}")
            return record
        if version is not None:
            record = self._versions.get(version)
            if record is None or record.state != AVAILABLE:
                raise NotFound(f"model {self.name!r} version {version} is not available "
                               f"({self._describe(version)}); available versions: {available}")
            return record
        if not available:
            raise NotFound(f"model {self.name!r} has no available version yet under {self.base_path}"
                           f" ({self._summary()})")
        return self._versions[available[-1]]

    def _describe(self, version: int) -> str:
        record = self._versions.get(version)
        if record is None:
            return "never seen under the base path"
        text = state_name(record.state)
        return f"{text}: {record.error_message}" if record.error_message else text

    def _summary(self) -> str:
        if self._scan_problem:
            return self._scan_problem
        if not self._versions:
            return "no version folders found"
        return ", ".join(f"{v}: {self._describe(v)}" for v in sorted(self._versions))

    def status(self, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        with self._cond:
            if label:
                if label not in self._labels:
                    raise NotFound(f"model {self.name!r} has no version label {shown(label)}; its labels: "
                                   f"{self._labels or 'none'}")
                version = self._labels[label]
            if version is not None and version not in self._versions:
                raise NotFound(f"model {self.name!r} has no version {version}; known versions: "
                               f"{sorted(self._versions)}")
            if not self._versions:
                raise NotFound(f"model {self.name!r} has no versions yet under {self.base_path} "
                               f"({self._summary()})")
            records = [self._versions[version]] if version is not None else \
                [self._versions[v] for v in sorted(self._versions)]
            return [VersionStatus(r.version, r.state, r.error_code, r.error_message, r.warmup_replayed)
                    for r in records]

    # ---- lifecycle ----------------------------------------------------------------------------
    def apply(self, config: ModelConfig) -> None:
        """Take a new policy and labels: load what the policy wants now, then check the labels.

        Labels may only name AVAILABLE versions (TF Serving's rule); if one does not, the new
        policy stays, the previous labels stay, and ``ConfigError`` says which label is wrong.
        """
        with self._cond:
            self._policy.CopyFrom(config)
        log.info("model %s: version policy %s, base path %s", self.name, describe_policy(config),
                 self.base_path)
        self.poll()
        with self._cond:
            for label, version in sorted(config.version_labels.items()):
                record = self._versions.get(version)
                if record is None or record.state != AVAILABLE:
                    raise ConfigError(f"model {self.name!r}: label {shown(label)} points to version "
                                      f"{version}, which is not available ({self._describe(version)})")
            self._labels = dict(config.version_labels)

    def poll(self) -> None:
        """One pass: find versions on disk, load those the policy wants, unload the others.

        A failed load can change what the policy wants (the next loadable version under
        ``latest``), so the pass repeats until it has nothing new to try.
        """
        with self._poll_lock:
            if self._closed:
                return
            on_disk = self._scan()
            if on_disk is None:
                return
            tried: set[int] = set()
            while True:
                with self._cond:
                    wanted = desired_versions(self._policy, on_disk, self._failed())
                    for version in wanted:
                        record = self._versions.get(version)
                        if record is None or (record.state == END and not record.gave_up):
                            self._versions[version] = VersionRecord(
                                version, os.path.join(self.base_path, str(version)))
                    to_load = sorted((v for v in wanted if self._versions[v].state == START and v not in tried),
                                     reverse=True)
                if not to_load:
                    break
                for version in to_load:  # newest first: it is the one "latest" requests want
                    tried.add(version)
                    self._load(self._versions[version])
            self._retire(wanted)

    def _failed(self) -> set[int]:
        """Versions whose last load attempt failed (retrying or given up)."""
        return {v for v, r in self._versions.items() if r.attempts and r.state != AVAILABLE}

    def load_failure(self) -> str | None:
        """Why nothing serves, when versions exist and every one tried has failed; else None."""
        with self._cond:
            if not self._versions or any(r.state in (AVAILABLE, LOADING) for r in self._versions.values()):
                return None
            if not self._failed():
                return None
            return f"model {self.name!r} serves no version: {self._summary()}"

    def _scan(self) -> set[int] | None:
        """Integer-named folders under the base path (temp folders of a push are not integers)."""
        try:
            names = os.listdir(self.base_path)
        except OSError as e:
            problem = f"cannot list the base path: {e.strerror}"
            if problem != self._scan_problem:
                log.warning("model %s: %s (%s); keeping the current versions", self.name, problem,
                            self.base_path)
            self._scan_problem = problem
            return None
        self._scan_problem = None
        return {int(n) for n in names
                if n.isdigit() and os.path.isdir(os.path.join(self.base_path, n))}

    def _load(self, record: VersionRecord) -> None:
        with self._cond:
            record.state = LOADING
        log.info("model %s version %d: loading from %s", self.name, record.version, record.path)
        started = time.monotonic()
        try:
            servable = Servable(self.name, record.version, record.path)
            replayed = servable.warm_up()
        except LoadError as e:
            self._load_failed(record, str(e))
            return
        with self._cond:
            record.servable = servable
            record.warmup_replayed = replayed
            record.state = AVAILABLE
            record.error_code, record.error_message = error_codes_pb2.OK, ""
        log.info("model %s version %d: available (loaded in %.2f s, %d warm-up requests replayed)",
                 self.name, record.version, time.monotonic() - started, replayed)

    def _load_failed(self, record: VersionRecord, message: str) -> None:
        with self._cond:
            record.attempts += 1
            record.gave_up = record.attempts > self._max_retries
            record.state = END if record.gave_up else START
            record.error_code = error_codes_pb2.UNKNOWN
            tries = f"attempt {record.attempts} of {self._max_retries + 1}"
            record.error_message = f"{message} ({tries}{'' if record.gave_up else ', will retry'})"
        log.error("model %s version %d: load failed (%s): %s%s", self.name, record.version, tries,
                  message, "; giving up" if record.gave_up else "; retrying at the next poll")

    def _retire(self, wanted: set[int]) -> None:
        with self._cond:
            wanted_serving = any(self._versions[v].state == AVAILABLE for v in wanted)
            victims = []
            for record in self._versions.values():
                if record.version in wanted:
                    continue
                if record.state == START:  # unwanted before it could load: stop trying
                    record.state = END
                elif record.state == AVAILABLE and (wanted_serving or not wanted):
                    victims.append(record)
        for record in sorted(victims, key=lambda r: r.version):
            self._unload(record)

    def _unload(self, record: VersionRecord) -> None:
        with self._cond:
            record.state = UNLOADING  # no new leases from here on
            in_flight = record.in_flight
            self._cond.wait_for(lambda: record.in_flight == 0)
            record.servable = None
            record.state = END
        log.info("model %s version %d: unloaded (after %d requests in flight finished)", self.name,
                 record.version, in_flight)

    def unload_all(self) -> None:
        """Unload every version and stop loading new ones (the model left the config, or shutdown)."""
        with self._poll_lock:
            self._closed = True
            with self._cond:
                serving = [r for r in self._versions.values() if r.state == AVAILABLE]
            for record in serving:
                self._unload(record)


class ServerCore:
    """Every served model, the poll thread, and config reloads."""

    def __init__(self, poll_seconds: float = 1.0, max_num_load_retries: int = 5,
                 limits: RequestLimits = RequestLimits()) -> None:
        self.poll_seconds = poll_seconds
        self.max_num_load_retries = max_num_load_retries
        self.limits = limits
        self._managers: dict[str, ModelManager] = {}
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def manager(self, name: str) -> ModelManager:
        manager = self._managers.get(name)
        if manager is None:
            raise NotFound(f"model {shown(name)} is not served here; served models: {sorted(self._managers)}")
        return manager

    @property
    def model_names(self) -> list[str]:
        return sorted(self._managers)

    def reload(self, config: ModelServerConfig) -> None:
        """Swap to ``config``: new models are loaded before models that left are unloaded."""
        validate(config, "model server config")
        with self._reload_lock:
            managers: dict[str, ModelManager] = {}
            problems: list[str] = []
            for model in config.model_config_list.config:
                manager = self._managers.get(model.name)
                if manager is None or manager.base_path != model.base_path:
                    manager = ModelManager(model, self.max_num_load_retries)
                managers[model.name] = manager
                try:
                    manager.apply(model)
                except ConfigError as e:
                    problems.append(str(e))
            retired = [m for m in self._managers.values() if managers.get(m.name) is not m]
            self._managers = managers
            for manager in retired:
                log.info("model %s: no longer in the config; unloading %s", manager.name, manager.base_path)
                manager.unload_all()
        if problems:
            raise ConfigError("; ".join(problems))

    def load_failures(self) -> list[str]:
        """One line per model that has versions but none that loads (see ``ModelManager.load_failure``)."""
        return [f for f in (m.load_failure() for m in self._managers.values()) if f]

    def start_polling(self) -> None:
        if self.poll_seconds <= 0 or self._thread is not None:
            return  # like tensorflow_model_server: a poll interval of 0 means look once, at start
        self._thread = threading.Thread(target=self._poll_loop, name="msrec-serving-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for manager in list(self._managers.values()):
                try:
                    manager.poll()
                except Exception:  # noqa: BLE001 - the poll thread must outlive any one bad pass
                    log.exception("model %s: poll failed; trying again in %.1f s", manager.name,
                                  self.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._reload_lock:
            for manager in self._managers.values():
                manager.unload_all()
