"""What a slurmrestd answer means for the rest backend: :func:`checked` turns an answer's HTTP status,
``errors`` and ``warnings`` into success, NotFoundError or SlurmError with Slurm's messages (only a held
job's notice and an empty list's are benign), and names the JWT fix (:data:`JWT_HINT`) where the
answer says the request was not authenticated."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fabric_hpc.errors import NotFoundError
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.client import UNKNOWN_JOB_HINT
from fabric_hpc.slurm.contract import SlurmError

#: the notice a held job's submit or update gets: in "errors" (v0.0.38, code 2042) or in
#: "warnings" (v0.0.40+, text only). It says the hold asked for was applied; nothing else is benign.
_BENIGN = {2042}
_BENIGN_TEXT = "Job is in held state, pending scheduler release"
#: the notice of an empty list (25.11's GET /jobs/ on an empty queue warns "Zero jobs to dump"): no failure
_EMPTY_LIST = re.compile(r"Zero \w+ to dump")
#: the notice of a read on a cluster without accounting storage: 24.05's data_parser v0.0.41 warns so on
#: every GET /job/ and /jobs/ (slurmdb_helpers.c load_prereqs_funcname, for the job's QOS) and still
#: dumps every job; benign on a read only (a write so warned may not have been applied)
_NO_ACCOUNTING = re.compile(
    r"Slurm accounting storage is disabled\. Could not query the following: \[[\w, ]*\]\.")
_NOT_FOUND = {2017}  # "Invalid job id specified"
#: the fix for an answer that says the request was not authenticated (401, 403, 511 or Slurm's words)
JWT_HINT = ("a JWT is missing, expired or not this cluster's, or not for the user sent (X-SLURM-USER-NAME: "
            "user=/agent.rest_user, else $USER)? export SLURM_JWT from `scontrol token username=USER` "
            "(lifespan=SECONDS), on one line; an installed agent reads agent.rest_token_file "
            "(docs/deploy.md)")
_AUTH_STATUS = {401, 403, 511}
#: SLURM_PROTOCOL_SOCKET_ZERO_BYTES_SENT: 24.05's slurmrestd answers a token slurmctld refuses with it
_ZERO_BYTES = 5005


def checked(status: int, data: Any, what: str, *, read: bool = False) -> Mapping[str, Any]:
    """A slurmrestd answer that reports success and nothing else; otherwise NotFoundError (unknown
    job) or SlurmError with Slurm's messages. Every warning counts (not the held-job and empty-list
    notices, nor on a ``read`` the notice of no accounting storage)."""
    data = decode.record(data, f"{what} answer")
    errors, warnings = data.get("errors") or [], data.get("warnings") or []
    if not isinstance(errors, list) or not isinstance(warnings, list):
        raise SlurmError(f"{what}: 'errors'/'warnings' are {type(errors).__name__}/{type(warnings).__name__}")
    errors = [e for e in errors if not (isinstance(e, dict) and e.get("error_code") in _BENIGN)]
    warnings = [w for w in warnings
                if not (isinstance(w, dict) and _benign(str(w.get("description", "")), read))]
    codes = {e.get(k) for e in errors if isinstance(e, dict) for k in ("error_code", "error_number", "errno")}
    if status == 404 or codes & _NOT_FOUND:
        raise NotFoundError(f"{what}: not found ({_messages(errors) or status})",
                            hint=UNKNOWN_JOB_HINT if codes & _NOT_FOUND else None)
    if status >= 400 or errors:
        text = _messages(errors)
        raise SlurmError(f"{what} answered HTTP {status}: {text}", hint=_auth_hint(status, text, codes))
    if warnings:  # e.g. "Ignoring unknown field": Slurm did not do all that was asked
        raise SlurmError(f"{what}: slurmrestd warned, so the request was not applied as asked: "
                         f"{_messages(warnings)}",
                         hint="a field this slurmrestd does not know? (docs/slurm.md)")
    return data


def _benign(text: str, read: bool) -> bool:
    """A warning that says nothing went wrong: the held-job notice; an empty list's (any request,
    as before); no accounting storage (a read only)."""
    return (text.endswith(_BENIGN_TEXT) or _EMPTY_LIST.fullmatch(text) is not None
            or (read and _NO_ACCOUNTING.fullmatch(text) is not None))


def _auth_hint(status: int, text: str, codes: set[Any]) -> str | None:
    """The JWT fix for an answer that says the request was not authenticated: HTTP 401/403/511 or
    "authentication" in Slurm's words (23.11+), or 22.05's bare "Unspecified error" (errno -1) and
    24.05's "Zero Bytes were transmitted or received" (5005), which their slurmrestd answer (HTTP 500)
    when slurmctld refuses the token."""
    if status in _AUTH_STATUS or "authentication" in text.lower():
        return JWT_HINT
    if status == 500 and -1 in codes and "Unspecified error" in text:
        return JWT_HINT + " (Slurm 22.05 answers a refused token so; otherwise see slurmctld's log)"
    if status == 500 and (_ZERO_BYTES in codes or "Zero Bytes were transmitted or received" in text):
        return JWT_HINT + (" (Slurm 24.05 answers a refused token so: slurmctld drops the connection; "
                           "otherwise see slurmctld's log)")
    return None


def _messages(items: list[Any]) -> str:
    """Slurm's messages: ``description`` (what failed, e.g. ``Batch job submission failed``) and, when
    it says something else, ``error`` (Slurm's reason, e.g. ``Requested topology configuration is not
    available``: v0.0.40+ error entries carry both)."""
    out = []
    for e in items:
        if isinstance(e, dict):
            description, reason = str(e.get("description") or ""), str(e.get("error") or "")
            if description and reason and reason not in description:
                out.append(f"{description}: {reason}")
            else:
                out.append(description or reason or str(e))
        else:
            out.append(str(e))
    return "; ".join(out)
