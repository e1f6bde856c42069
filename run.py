#!/usr/bin/env python3
"""Start the app or run its tests with nothing but Python 3.11+.

    python3 run.py          create .venv, install, migrate, load demo data, and start
                            web + Celery worker + Celery Beat (Ctrl-C stops all three)
    python3 run.py test     create .venv with the test tools and run the whole test suite
                            (extra arguments go to pytest)

Settings come from the environment (see README.md); without any, the app runs
on SQLite and Celery's filesystem broker under var/.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def ensure_venv(requirements: str) -> None:
    """Create .venv and install ``requirements`` unless it is already installed."""
    if sys.version_info < (3, 11):
        sys.exit("Python 3.11 or newer is needed; this is " + sys.version.split()[0])
    if not PYTHON.exists():
        say("Creating the virtualenv in .venv")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = hashlib.sha256()
    for name in ("requirements.txt", requirements):
        digest.update((ROOT / name).read_bytes())
    stamp = VENV / f".installed-{requirements}"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    say(f"Installing {requirements} (first run takes a minute)")
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "-r", str(ROOT / requirements)], check=True)
    stamp.write_text(digest.hexdigest())


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, env=env, check=True)


def start() -> int:
    ensure_venv("requirements.txt")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DEBUG", "1")
    port = env.get("PORT", "8000")
    say("Preparing the database")
    manage("migrate", "--noinput", "-v", "0", env=env)
    manage("seed_demo", "--subscribers", env.get("DEMO_SUBSCRIBERS", "2000"), env=env)
    manage("demo_journeys", env=env)
    manage("recount_segments", "-v", "0", env=env)
    manage("create_demo_login", env=env)
    commands = {
        "web": [str(PYTHON), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "worker": [str(PYTHON), "-m", "celery", "-A", "marketing", "worker", "--loglevel", "INFO",
                   "--concurrency", "2"],
        "beat": [str(PYTHON), "-m", "celery", "-A", "marketing", "beat", "--loglevel", "INFO"],
    }
    processes = {name: subprocess.Popen(cmd, cwd=ROOT, env=env) for name, cmd in commands.items()}
    say(f"Admin: http://127.0.0.1:{port}/admin/  (web, worker and beat are running; Ctrl-C stops all three)")
    code = 0
    try:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    say(f"{name} stopped (exit code {process.returncode}); stopping the others")
                    code = process.returncode or 1
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C while stopping must not leave the others running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        say("Stopping web, worker and beat")
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
    return code


def test(pytest_args: list[str]) -> int:
    ensure_venv("requirements-dev.txt")
    env = {**os.environ}
    say("Lint (ruff)")
    lint = subprocess.run([str(PYTHON), "-m", "ruff", "check", "."], cwd=ROOT, env=env)
    if lint.returncode:
        return lint.returncode
    backend = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    say(f"Tests on {backend}")
    return subprocess.run([str(PYTHON), "-m", "pytest", *pytest_args], cwd=ROOT, env=env).returncode


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] == "test":
        return test(args[1:])
    if args and args[0] not in {"start"}:
        print(__doc__)
        return 2
    return start()


if __name__ == "__main__":
    sys.exit(main())
