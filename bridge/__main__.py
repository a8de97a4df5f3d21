"""Command line: run the bridge, generate its registration, upgrade its database, or be a worker.

python -m bridge -c config.yaml                              run
python -m bridge -g -c config.yaml -r registration.yaml     new tokens + registration
python -m bridge db upgrade -c config.yaml                  apply migrations
python -m bridge edge-config -c config.yaml [-o DIR]        write the SIP edge's Kamailio files
python -m bridge worker --ipc-fd N                          (started by the controller)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from .config import Config, ConfigError, load_config
from .log import setup_logging

EXIT_CONFIG = 10
log = logging.getLogger("bridge")


def _load(path: Path, require_tokens: bool = True) -> Config:
    try:
        return load_config(path, require_tokens=require_tokens)
    except ConfigError as e:
        print(f"config error: {e}".replace("\n", "\nconfig error: "), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _run(config_path: Path) -> int:
    from .app import Bridge, StartupError

    config = _load(config_path)
    setup_logging(config.logging.level, "controller")

    async def main() -> int:
        bridge = Bridge(config)
        try:
            await bridge.start()
        except StartupError as e:
            log.critical("cannot start: %s", e)
            await bridge.stop()
            return e.exit_code
        try:
            await bridge.run_until_stopped()
        finally:
            await bridge.stop()
        return 0

    return asyncio.run(main())


def _generate(config_path: Path, registration_path: Path) -> int:
    from .registration import generate_registration

    _load(config_path, require_tokens=False)
    registration = generate_registration(config_path, registration_path)
    print(
        f"Wrote {registration_path} (id {registration['id']}, url {registration['url']}) and "
        f"new tokens into {config_path}.\nAdd the registration to your homeserver "
        "(Synapse: app_service_config_files) and restart it, then start the bridge."
    )
    return 0


def _db_upgrade(config_path: Path) -> int:
    from .storage.database import Database, StorageError

    config = _load(config_path, require_tokens=False)
    setup_logging(config.logging.level, "db")

    async def main() -> int:
        db = Database(config.database.url)
        try:
            await db.upgrade()
            revision = await db.current_revision()
        except StorageError as e:
            log.critical("%s", e)
            return 11
        finally:
            await db.close()
        print(f"database at revision {revision}")
        return 0

    return asyncio.run(main())


def _edge_config(config_path: Path, directory: Path | None) -> int:
    from .edge.files import write_edge_config

    config = _load(config_path, require_tokens=False)
    main_cfg = write_edge_config(config, directory)
    print(
        f"Wrote {main_cfg} and its generated parts. Start Kamailio with it "
        f"(kamailio -f {main_cfg}) and set edge.enabled: true in the bridge's config."
    )
    return 0


def _worker(ipc_fd: int) -> int:
    from .workers.worker_main import run_worker

    return asyncio.run(run_worker(ipc_fd))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        parser = argparse.ArgumentParser(prog="python -m bridge worker")
        parser.add_argument("--ipc-fd", type=int, required=True)
        return _worker(parser.parse_args(argv[1:]).ipc_fd)
    if argv[:2] == ["db", "upgrade"]:
        parser = argparse.ArgumentParser(prog="python -m bridge db upgrade")
        parser.add_argument("-c", "--config", type=Path, default=Path("config.yaml"))
        return _db_upgrade(parser.parse_args(argv[2:]).config)
    if argv[:1] == ["edge-config"]:
        parser = argparse.ArgumentParser(prog="python -m bridge edge-config")
        parser.add_argument("-c", "--config", type=Path, default=Path("config.yaml"))
        parser.add_argument("-o", "--output", type=Path, help="folder (default: edge.config_dir)")
        args = parser.parse_args(argv[1:])
        return _edge_config(args.config, args.output)
    parser = argparse.ArgumentParser(
        prog="python -m bridge", description="SIP/PSTN ⇄ Matrix bridge (appservice)"
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path("config.yaml"),
        help="config file (default: config.yaml)",
    )
    parser.add_argument(
        "-g",
        "--generate-registration",
        action="store_true",
        help="write new tokens into the config and a registration file",
    )
    parser.add_argument(
        "-r",
        "--registration",
        type=Path,
        default=Path("registration.yaml"),
        help="registration file to write with -g (default: registration.yaml)",
    )
    args = parser.parse_args(argv)
    if args.generate_registration:
        return _generate(args.config, args.registration)
    return _run(args.config)


if __name__ == "__main__":
    sys.exit(main())
