"""``fabric agent``: the placement agent daemon and its status."""

from __future__ import annotations

import click

from fabric_hpc.cli.output import json_option, render, table


@click.group("agent")
def group() -> None:
    """The fabric placement agent for Slurm: run, status."""


@group.command("run")
@click.option("--topology", "topology", required=True,
              help="Fabric model (YAML) whose hosts are the Slurm nodes.")
@click.option("--state-dir", default="/var/lib/fabric-agent", show_default=True,
              help="Lock, heartbeat, status and the decision log live here (the plugin reads the heartbeat).")
@click.option("--interval", "interval_s", type=float, default=2.0, show_default=True, help="Seconds between cycles.")
@click.option("--fallback", "fallback_s", type=int, default=60, show_default=True,
              help="Deferral per cycle; must match job_submit.lua's FALLBACK_S.")
@click.option("--policy", default="fabric", show_default=True, type=click.Choice(["fabric", "slurm"]))
@click.option("--placement", default="greedy", show_default=True, type=click.Choice(["greedy", "cpsat"]))
@click.option("--compact-wait", "compact_wait_s", type=float, default=None,
              help="Seconds a multi-host gang waits for a compact placement before it may spread "
                   "(the fabric policy's compact_wait_s; default: the policy's).")
@click.option("--metrics-port", type=int, default=0, show_default=True, help="Prometheus port on 127.0.0.1 (0: off).")
@click.option("--backend", type=click.Choice(["cli", "rest", "pyslurm"]), default="cli", show_default=True,
              help="How to talk to Slurm: its commands, slurmrestd, or pyslurm (Slurm 25.11; needs SLURM_CONF).")
@click.option("--rest-url", default=None, help="slurmrestd address for --backend rest.")
@click.option("--cycles", type=int, default=None, help="Stop after this many cycles (default: run until SIGTERM).")
@click.option("--contact-timeout", "contact_timeout_s", type=float, default=10.0, show_default=True,
              help="Seconds Slurm may take to answer the first contact; no answer: exit 5 at once.")
@click.option("--max-backoff", "max_backoff_s", type=float, default=10.0, show_default=True,
              help="Longest wait after a failed cycle (the wait doubles from 0.25 s up to this).")
@click.option("--tier-map", "tier_map", multiple=True, metavar="KIND:NAME=TIER",
              help="Map a Slurm QOS or partition to a tier (high, normal, spot): qos:urgent=high, "
                   "partition:preempt=spot. Repeat it. A mapped QOS wins over the partition and the comment.")
@click.option("--ckpt-root", "ckpt_root", default=None,
              help="The TaskProlog's ckpt_root: each running job's last checkpoint time is read from "
                   "<ckpt-root>/<user>/<job name>, so preemption counts only work since it (default: not read).")
@click.option("--backfill-interval", "backfill_interval_s", type=float, default=0.0, show_default=True,
              help="Backfill passes at most this often (s); main passes in between, like the simulator's "
                   "--backfill-interval. 0: every cycle backfills.")
@click.option("--record-cycles", is_flag=True, default=False,
              help="Append each cycle's scheduler input and decisions to <state-dir>/cycles.jsonl (replayable).")
def run(topology: str, state_dir: str, interval_s: float, fallback_s: int, policy: str, placement: str,
        compact_wait_s: float | None, metrics_port: int, backend: str, rest_url: str | None, cycles: int | None,
        contact_timeout_s: float, max_backoff_s: float, tier_map: tuple[str, ...], ckpt_root: str | None,
        backfill_interval_s: float, record_cycles: bool) -> None:
    """Run the agent: place fabric-marked pending jobs, every interval and when the plugin wakes it.

    Slurm must answer at start (else exit 5 within --contact-timeout). Once running, a failed cycle
    is logged as an agent.error event and retried after a backoff; the agent never stops on an answer.
    """
    from fabric_hpc.slurm import open_client
    from fabric_hpc.slurm.agent import Agent, AgentConfig
    from fabric_hpc.topology import open_fabric
    from fabric_hpc.validation import parse_model

    config = parse_model(AgentConfig, {"state_dir": state_dir, "interval_s": interval_s, "fallback_s": fallback_s,
                                       "policy": policy, "placement": placement, "metrics_port": metrics_port,
                                       "compact_wait_s": compact_wait_s, "contact_timeout_s": contact_timeout_s,
                                       "max_backoff_s": max_backoff_s, "tier_map": list(tier_map),
                                       "ckpt_root": ckpt_root, "backfill_interval_s": backfill_interval_s,
                                       "record_cycles": record_cycles},
                         source="fabric agent run")
    agent = Agent(open_client(backend, url=rest_url), open_fabric(topology), config)
    agent.install_signal_handlers()
    agent.run(max_cycles=cycles)


@group.command("status")
@click.option("--state-dir", default="/var/lib/fabric-agent", show_default=True)
@json_option
def status(state_dir: str, as_json: bool) -> None:
    """Is the agent running, when did it last cycle, what is waiting."""
    from fabric_hpc.slurm.agent import read_status

    st = read_status(state_dir)

    def human(con) -> None:
        alive = f"running (pid {st['lock_holder']})" if st["running"] else "NOT running"
        con.print(f"agent: {alive}; heartbeat {st['heartbeat_age_s']} s ago; cycles {st.get('cycles', 0)}; "
                  f"last cycle {st.get('cycle_s', 0):.3f} s")
        waiting = st.get("waiting") or {}
        con.print(table("waiting jobs", ["job", "reason"], sorted(waiting.items())[:50]))

    render(as_json, st, human)
