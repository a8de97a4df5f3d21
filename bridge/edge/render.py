"""Kamailio's per-installation files, written from the bridge's config (pure functions).

The routing logic is the fixed kamailio.cfg next to this module; what differs between
installations (addresses, limits, workers, trunks, peers) goes into the files below.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..config import Config

WORKER_GROUP = 1
TRUNK_GROUP = 1
GENERATED_CFG = "edge.generated.cfg"
DISPATCHER_LIST = "dispatcher.list"
TRUNKS_LIST = "trunks.list"
RPC_SOCKET = "rpc.sock"


def _reachable(host: str) -> str:
    """An address others can send to: a wildcard bind becomes loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def edge_address(config: Config) -> str:
    """host:port where the workers reach the edge (and see its requests come from)."""
    return f"{_reachable(config.edge.listen_host)}:{config.edge.port}"


def worker_uri(config: Config, worker_id: int) -> str:
    return f"sip:{_reachable(config.sip.listen_host)}:{config.sip.port + worker_id - 1}"


def worker_duid(worker_id: int) -> str:
    return f"w{worker_id}"


def realm(config: Config) -> str:
    return config.edge.realm or config.homeserver.domain


def ha1(algorithm: str, username: str, realm_: str, password: str) -> str:
    """RFC 7616 H(username:realm:password): the edge keeps this, never the password."""
    digest = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5
    return digest(f"{username}:{realm_}:{password}".encode()).hexdigest()


@dataclass(frozen=True)
class EdgeFiles:
    generated_cfg: str
    dispatcher_list: str
    trunks_list: str


def dispatcher_list(config: Config) -> str:
    """Every worker, inactive (flag 1) until the controller reports it ready."""
    lines = ["# group uri flags priority attributes; maxload: the calls a worker takes"]
    for worker_id in range(1, config.workers.count + 1):
        attrs = f"duid={worker_duid(worker_id)};maxload={config.workers.max_calls}"
        lines.append(f"{WORKER_GROUP} {worker_uri(config, worker_id)} 1 0 {attrs}")
    return "\n".join(lines) + "\n"


def trunks_list(config: Config) -> str:
    """permissions module address file: group, address, prefix length, port, tag."""
    lines = ["# group address mask port trunk"]
    for trunk in config.sip.trunks:
        for source in trunk.allowed_sources:
            network = ipaddress.ip_network(source, strict=False)
            lines.append(
                f"{TRUNK_GROUP} {network.network_address} {network.prefixlen} 0 {trunk.name}"
            )
    return "\n".join(lines) + "\n"


def generated_cfg(config: Config, directory: Path, nonce: str | None = None) -> str:
    edge = config.edge
    directory = directory.resolve()
    realm_ = realm(config)
    advertised = f" advertise {edge.advertised_host}:{edge.port}" if edge.advertised_host else ""
    public = f"{edge.advertised_host or _reachable(edge.listen_host)}:{edge.port}"
    unknown = nonce or secrets.token_hex(32)
    new_calls_per_second = edge.calls_per_second_per_worker * config.workers.count
    lines = [
        "# Written by `python -m bridge edge-config` from the bridge's config; edits are lost.",
        *(f"listen={t}:{edge.listen_host}:{edge.port}{advertised}" for t in edge.transports),
        f'#!substdef "!EDGE_ADDRESS!{public}!g"',
        f'#!define EDGE_REALM "{realm_}"',
        f"#!define EDGE_AUTH_FAILURES {edge.auth_failures}",
        # Unknown users are checked against a hash nobody knows the password of.
        f'#!define EDGE_UNKNOWN_PEER_PASSWORD "{ha1(edge.digest_algorithm, "", "", unknown)}"',
        f'modparam("jsonrpcs", "dgram_socket", "{directory / RPC_SOCKET}")',
        f'modparam("auth", "algorithm", "{edge.digest_algorithm}")',
        f'modparam("permissions", "address_file", "{directory / TRUNKS_LIST}")',
        f'modparam("dispatcher", "list_file", "{directory / DISPATCHER_LIST}")',
        f'modparam("ratelimit", "pipe", "1:TAILDROP:{new_calls_per_second}")',
        f'modparam("pike", "sampling_time_unit", {edge.flood_window})',
        f'modparam("pike", "reqs_density_per_unit", {edge.flood_requests})',
        f'modparam("htable", "htable", "ipban=>size=8;autoexpire={edge.block_seconds};")',
        f'modparam("htable", "htable", "authfail=>size=8;autoexpire={edge.block_seconds};'
        'initval=0;")',
        "",
        "event_route[htable:mod-init] {",
        *(
            f'\t$sht(peers=>{p.username}) = "'
            f'{ha1(edge.digest_algorithm, p.username, realm_, p.password)}";'
            for p in edge.peers
        ),
        "\treturn;",  # Kamailio refuses an empty block (no peers)
        "}",
    ]
    return "\n".join(lines) + "\n"


def render(config: Config, directory: Path) -> EdgeFiles:
    return EdgeFiles(
        generated_cfg=generated_cfg(config, directory),
        dispatcher_list=dispatcher_list(config),
        trunks_list=trunks_list(config),
    )
