"""Write Kamailio's configuration for this bridge into the edge's config folder."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..config import Config
from .render import DISPATCHER_LIST, GENERATED_CFG, TRUNKS_LIST, render

MAIN_CFG = "kamailio.cfg"


def main_cfg_text() -> str:
    return resources.files(__package__).joinpath(MAIN_CFG).read_text()


def write_edge_config(config: Config, directory: Path | None = None) -> Path:
    """Write kamailio.cfg and its generated parts; returns the path of kamailio.cfg.

    The generated part holds the peers' password hashes: only the owner may read it.
    """
    directory = directory or config.edge.config_dir
    directory.mkdir(parents=True, exist_ok=True)
    files = render(config, directory)
    contents = {
        MAIN_CFG: main_cfg_text(),
        GENERATED_CFG: files.generated_cfg,
        DISPATCHER_LIST: files.dispatcher_list,
        TRUNKS_LIST: files.trunks_list,
    }
    for name, text in contents.items():
        path = directory / name
        temporary = path.with_suffix(path.suffix + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        temporary.replace(path)
    return directory / MAIN_CFG
