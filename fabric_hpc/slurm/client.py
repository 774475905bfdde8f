"""``open_client(backend, ...)``: one entry point for the three backends."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.contract import SlurmClient, SlurmError

BACKENDS = ("cli", "rest", "pyslurm")


#: the fix for a job id Slurm does not know (``fabric slurm why 99``), whichever backend asked
UNKNOWN_JOB_HINT = ("check the id with squeue -j ID: Slurm forgets a job MinJobAge seconds (300 by default) "
                    "after it ends; sacct -j ID shows older ones")


def check_slurm_conf(conf: str | None, reader: str) -> None:
    """SlurmError when ``conf`` (a ``SLURM_CONF`` value; None or empty: not set) names no readable file:
    checked before Slurm is asked, as the Slurm commands then wait for a configuration source and
    libslurm ends the process. ``reader`` says what cannot work (``pyslurm cannot be loaded``)."""
    if conf and (not os.path.isfile(conf) or not os.access(conf, os.R_OK)):
        raise SlurmError(f"SLURM_CONF={conf} is not a readable file: {reader}",
                         hint="point SLURM_CONF at the cluster's slurm.conf")


def shown_url(url: str) -> str:
    """``url`` as it may be printed: a ``user:password@`` part replaced by ``***@``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1***@", url)


def check_rest_url(url: str, *, source: str = "--rest-url") -> None:
    """``unix:/path`` or ``http://host[:port][/prefix]`` (a path prefix: a slurmrestd behind a proxy;
    no query or fragment), with a port in 1..65535 (``https`` is refused: the
    rest backend has no TLS client) and no ``user:password@`` (slurmrestd takes a JWT in headers,
    not HTTP basic auth). The messages show the URL without its password and name it ``source``
    (the CLI's flag by default; :func:`open_client` called from Python: ``url``)."""
    from urllib.parse import urlsplit

    hint = (f"{source} unix:/run/slurmrestd.sock or http://127.0.0.1:6820" if source.startswith("-") else
            f"{source}='unix:/run/slurmrestd.sock' or {source}='http://127.0.0.1:6820'")
    shown = shown_url(url)
    if url.startswith("unix:"):
        if not url[5:].strip() or any(ch in url for ch in "\0\n"):
            raise ConfigError(f"{source} {shown!r}: no socket path after 'unix:'", hint=hint)
        return
    if shown != url:
        raise ConfigError(f"{source} {shown!r}: a user name or password in the URL is not supported: "
                          "slurmrestd authenticates a JWT sent in headers, not HTTP basic auth",
                          hint="remove 'user:password@' from the URL and export SLURM_JWT "
                               "(scontrol token lifespan=... prints one); the user is USER")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{source} {shown!r}: {exc}", hint=hint) from None
    if parts.scheme == "https":  # the rest backend speaks plain HTTP (or a unix socket) only
        raise ConfigError(f"{source} {shown!r}: https is not supported by the rest backend (slurmrestd "
                          "itself serves no TLS); use its unix socket or plain http on a trusted network",
                          hint=hint)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"{source} {shown!r} is not an http URL or unix: socket", hint=hint)
    if port == 0:
        raise ConfigError(f"{source} {shown!r}: port 0 is not a port", hint=hint)
    if parts.query or parts.fragment or "?" in url or "#" in url:  # slurmrestd's paths take no query
        raise ConfigError(f"{source} {shown!r}: a query or fragment ('?…', '#…') is not supported: the "
                          "rest backend appends slurmrestd's paths to the URL", hint="give http://host:port, "
                          "or http://host:port/prefix for a slurmrestd behind a proxy at that path")


def open_client(backend: str = "cli", *, env: Mapping[str, str] | None = None, url: str | None = None,
                token: str | None = None, timeout: float = 30.0, token_file: str | None = None,
                user: str | None = None, cli_words: bool = False) -> SlurmClient:
    """A :class:`SlurmClient`: ``cli`` (default), ``rest`` (needs ``url``; ``token_file``/``user``: the
    JWT's file and user name, default ``SLURM_JWT`` and ``USER``) or ``pyslurm``. The messages name
    these arguments (``url=``); ``cli_words``: the CLI's and the agent's flags and keys instead."""
    if backend != "rest" and (token_file or user):
        if not cli_words:
            raise ConfigError(f"token_file= / user= are for backend rest, not backend={backend!r} (ignored "
                              "there)", hint="pass backend='rest', or leave them out")
        raise ConfigError(f"rest_token_file / rest_user are for backend rest, not {backend} (ignored there)",
                          hint="set backend = \"rest\", or leave them out")
    if url and backend != "rest":
        if not cli_words:
            raise ConfigError(f"url= is for backend rest, not backend={backend!r} (it would be ignored)",
                              hint="pass backend='rest', or leave url out")
        raise ConfigError(f"--rest-url is for --backend rest, not --backend {backend} (it would be ignored)",
                          hint="add --backend rest, or leave --rest-url out (agent config: backend = "
                               "\"rest\" or no rest_url)")
    if backend == "cli":
        from fabric_hpc.slurm.cli_backend import CliClient

        return CliClient(env, timeout=timeout)
    if backend == "rest":
        if not url:
            raise ConfigError("the rest backend needs the slurmrestd address", hint=(
                "--rest-url unix:/run/slurmrestd.sock (or http://127.0.0.1:6820 with a JWT)" if cli_words else
                "url='unix:/run/slurmrestd.sock' (or url='http://127.0.0.1:6820' with a JWT)"))
        check_rest_url(url, source="--rest-url" if cli_words else "url")
        from fabric_hpc.slurm.rest_backend import RestClient

        return RestClient(url, token=token, timeout=timeout, env=env, token_file=token_file, user=user)
    if backend == "pyslurm":
        from fabric_hpc.slurm.pyslurm_backend import PyslurmClient

        return PyslurmClient()
    raise ConfigError(f"unknown Slurm backend {backend!r}", hint=f"backends: {', '.join(BACKENDS)}")
