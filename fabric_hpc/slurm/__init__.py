"""Talking to a real Slurm: one client interface (cli, rest, pyslurm backends), robust parsers,
the placement agent, and ``why``. See docs/slurm.md.

    from fabric_hpc.slurm import open_client, Agent, AgentConfig
    client = open_client("cli")                       # or "rest" with url="unix:/run/slurmrestd.sock"
    client.jobs(); client.nodes(); client.place(42, ["n3", "n4"])
    Agent(client, fab, AgentConfig(state_dir="/var/lib/fabric-agent")).run()
"""

from fabric_hpc.slurm.client import BACKENDS, open_client
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError
from fabric_hpc.slurm.parse import Gres, gpu_count, gpu_indices, hosts, parse_gres, parse_key_values, parse_state

__all__ = ["BACKENDS", "Agent", "AgentConfig", "Gres", "Job", "Node", "SlurmClient", "SlurmError", "explain",
           "gpu_count", "gpu_indices", "hosts", "open_client", "parse_gres", "parse_key_values", "parse_state",
           "read_status"]


def __getattr__(name: str):  # the agent pulls in the scheduler and placement: import on use
    if name in ("Agent", "AgentConfig", "read_status"):
        from fabric_hpc.slurm import agent

        return getattr(agent, name)
    if name == "explain":
        from fabric_hpc.slurm.why import explain

        return explain
    raise AttributeError(name)
