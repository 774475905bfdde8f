"""The main job on the built-in default cluster (a DGX H100 SuperPOD of 4 SUs): what ``make demo``
runs in a checkout, and ``python -m fabric_hpc.demo --out DIR`` runs from an installed wheel.

1. writes the fabric description and its Slurm exports (topology.conf, gres.conf);
2. replays the bundled gang workload with the Slurm-like baseline (multifactor priority, EASY
   backfill, ``slurm-tree`` placement) and with fabric's policy (same code as the live agent);
3. prints the comparison and writes ``report.html`` (plots, and the topology report of each
   policy's busiest moment).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fabric_hpc.errors import FabricError


def run(out: Path, *, progress: bool = True) -> dict:
    from fabric_hpc.sim.demo import demo_compare
    from fabric_hpc.topology import open_fabric, save_spec
    from fabric_hpc.topology import export as ex

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fab = open_fabric()
    save_spec(fab.spec, out / "fabric.yaml")
    (out / "topology.conf").write_text(ex.topology_conf(fab))
    (out / "gres.conf").write_text(ex.gres_conf(fab))
    result = demo_compare(out, fabric=fab, progress=progress)
    return {"fabric": fab.name, "hosts": len(fab.hosts), "gpus": len(fab.gpus), **result,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fabric_hpc.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out", help="output directory (default: out)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        result = run(Path(args.out), progress=not args.no_progress)
    except FabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    from fabric_hpc.cli.output import console, table

    from rich.text import Text

    con = console()  # markup off (a fabric's name is text): the bold title is a styled Text
    con.print(Text.assemble(("fabric-hpc demo", "bold"),
                            f" on {result['fabric']}: {result['hosts']} hosts, {result['gpus']} GPUs"))
    con.print(table("Slurm-like baseline vs fabric (same workload, same cluster)", result["columns"],
                    result["rows"]))
    con.print(f"wrote {args.out}/fabric.yaml, topology.conf, gres.conf and per-policy results.json")
    con.print(f"report: {result['report']} (open it in a browser)")
    con.print(f"done in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
