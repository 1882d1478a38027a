"""``msrec serve`` as a process: flags, loopback bind, clean stop on SIGTERM, clear start-up errors."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import ipaddress
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from msrec import cli
from msrec.serving.client import PredictClient
from support.serving import build_toy_model, push_version

LISTENING = re.compile(r"serving toy on (\S+):(\d+) \(plaintext\)")


def _address(hex_address: str) -> str:
    """/proc/net/tcp* spelling (32-bit words in host order) -> an IP address; v4-mapped v6 -> v4."""
    raw = b"".join(int(hex_address[i:i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(hex_address), 8))
    ip = ipaddress.ip_address(raw)
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(_address(address))
    return found


def test_serve_binds_loopback_and_stops_cleanly_on_sigterm(tmp_path):
    push_version(tmp_path / "toy", 1, build_toy_model(tmp_path / "export"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "msrec.cli", "serve", "--port", "0", "--model_name", "toy",
         "--model_base_path", str(tmp_path / "toy"), "--file_system_poll_wait_seconds", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    log = []
    try:
        match = None
        while match is None:
            line = lines.get(timeout=180)
            log.append(line)
            match = LISTENING.search(line)
        host, port = match.group(1), int(match.group(2))
        assert host == "127.0.0.1"
        assert _listening_addresses(port) == {"127.0.0.1"}  # loopback only, not 0.0.0.0 or ::
        with PredictClient(f"{host}:{port}") as client:
            assert client.status("toy")[0]["state"] == "AVAILABLE"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    while not lines.empty():
        log.append(lines.get())
    text = "".join(log)
    assert "model toy version 1: available" in text
    assert "SIGTERM received: stopping" in text
    assert "model toy version 1: unloaded" in text and text.rstrip().endswith("stopped")


def test_serve_without_a_model_says_what_to_give(capsys):
    assert cli.main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "nothing to serve: give --model_base_path (and --model_name) or --model_config_file" in err


def test_serve_with_a_broken_config_file_names_it(tmp_path, capsys):
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/x" model_platform: "onnx" } }')
    assert cli.main(["serve", "--port", "0", "--model_config_file", str(config)]) == 1
    assert f"{config}: config #1 (m): model_platform 'onnx' is not served" in capsys.readouterr().err


def test_a_port_in_use_fails_before_any_model_loads_in_one_line(tmp_path, capfd, caplog):
    """The port is bound first: a taken one is one clear line and exit 1, not a wait for every load."""
    export = build_toy_model(tmp_path / "export")
    for version in (1, 2, 3):
        push_version(tmp_path / "toy", version, export)
    caplog.set_level(logging.INFO, logger="msrec.serving")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        capfd.readouterr()
        started = time.monotonic()
        code = cli.main(["serve", "--port", str(port), "--model_name", "toy",
                         "--model_base_path", str(tmp_path / "toy")])
        elapsed = time.monotonic() - started
    assert code == 1
    assert capfd.readouterr().err == f"msrec serve: cannot bind 127.0.0.1:{port}: Address already in use\n"
    assert not [r for r in caplog.records if "loading" in r.getMessage()]  # no model was touched
    assert elapsed < 5
