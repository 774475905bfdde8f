"""A pinned job's hosts in ``fabric slurm why``: the pending reasons that say Slurm will not start it there
(or that it waits for something else), and what keeps it off them now (down, drained or reserved hosts,
GPUs, memory or whole nodes other jobs hold), from one nodes read."""

from __future__ import annotations

from fabric_hpc.hostlist import compress
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError
from fabric_hpc.slurm.view_hosts import WHOLE_NODE_MEM, free_memory, in_use, mem_per_node

#: Pending reasons (their start) of a pinned job that Slurm will not start on its pinned hosts, in words.
REFUSED_HOSTS = {
    "ReqNodeNotAvail": "some of them are unavailable to it (down, drained, or reserved for another job)",
    "Reservation": "the job waits for its reservation, and may start only on the reservation's nodes",
    "NodeDown": "one of them is down",
    "Constraints": "they lack a feature the job asks for (--constraint)",
}
#: Pending reasons of a pinned job that waits for something other than GPUs or its hosts
#: (src/common/job_state_reason.c; their words are in :data:`~fabric_hpc.slurm.parse.REASONS`).
WAITS_FOR = frozenset({"Licenses", "BurstBufferResources", "BurstBufferStageIn", "NvidiaImexChannels",
                       "MpiPortsBusy", "Cleaning"})
_BAD_FLAGS = {"DRAIN", "NOT_RESPONDING", "DOWN", "FAIL"}


def refused_hosts(reason: str) -> str | None:
    """Why Slurm will not start a pinned job on its hosts, in words (None: nothing says it refuses)."""
    return next((words for key, words in REFUSED_HOSTS.items() if reason.startswith(key)), None)


def host_facts(client: SlurmClient, job: Job) -> tuple[str, str] | None:
    """What keeps a pinned job off its hosts now, from one nodes read: (hosts down, drained, unknown,
    reserved for others or with fewer GPUs in Slurm than it asks per node; hosts with fewer free GPUs, less
    free memory than it needs, or in use while it is ``--exclusive``), '' for none; None: not read."""
    try:
        nodes = {n.name: n for n in client.nodes()}
    except SlurmError:
        return None
    states: dict[str, list[str]] = {}
    busy: list[str] = []
    small: dict[int, list[str]] = {}  # GPUs in Slurm -> hosts with fewer than the job asks per node
    for host in job.req_nodes:
        node = nodes.get(host)
        if node is None:
            states.setdefault("unknown to Slurm", []).append(host)
        elif not node.usable:
            flags = [f.lower().replace("_", " ") for f in node.flags if f in _BAD_FLAGS]
            states.setdefault("+".join(dict.fromkeys([node.state, *flags])), []).append(host)
        elif node.reserved and not job.reservation:
            states.setdefault("in a reservation", []).append(host)
        elif job.gpus_per_node and node.gpus < job.gpus_per_node:  # never, whatever runs there
            small.setdefault(node.gpus, []).append(host)
        elif job.gpus_per_node and node.gpus - len(node.gpus_used) < job.gpus_per_node:
            busy.append(host)
    bad = ", ".join([f"{compress(hs)} {'is' if len(hs) == 1 else 'are'} {what}"
                     for what, hs in states.items()]
                    + [_too_small(hs, n, job.gpus_per_node) for n, hs in small.items()])
    held = [f"other jobs hold GPUs it needs on {compress(busy)}"] if busy else []
    return bad, "; ".join(held + _held_otherwise(job, [nodes[h] for h in job.req_nodes if h in nodes]))


def _too_small(hosts: list[str], gpus: int, asks: int) -> str:
    """Hosts with fewer GPUs in Slurm (their Gres) than the job asks per node, in words."""
    each = "has only" if len(hosts) == 1 else "have only"
    return (f"{compress(hosts)} {each} {gpus} GPU{'s' if gpus != 1 else ''} in Slurm"
            f"{'' if len(hosts) == 1 else ' each'} (the job asks {asks} per node)")


def _held_otherwise(job: Job, nodes: list[Node]) -> list[str]:
    """What other jobs hold on a pinned job's up hosts that it needs besides GPUs, in words: memory (where
    Slurm allocates it: :func:`~fabric_hpc.slurm.view_hosts.mem_per_node`) and, for an ``--exclusive``
    job, the hosts themselves."""
    out = []
    need = mem_per_node(job)
    free_of = {n.name: mem for n in nodes if n.usable and (mem := free_memory(n)) is not None}
    short = [n for n in nodes if n.name in free_of and free_of[n.name] < need]
    if short:
        free = sorted({free_of[n.name] for n in short})
        asks = (f"{need} MiB of memory per node" if need != WHOLE_NODE_MEM
                else "all of a node's memory (no --mem)")
        have = " to ".join(str(f) for f in (free[0], free[-1])[: 1 if len(free) == 1 else 2])
        out.append(f"it asks for {asks} and other jobs hold memory there ({have} MiB free on "
                   f"{compress([n.name for n in short])})")
    used = [n.name for n in nodes if n.usable and in_use(n)]
    if job.exclusive and used:
        out.append(f"it asks for whole nodes (--exclusive) and other jobs run on {compress(used)}")
    return out
