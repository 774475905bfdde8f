"""``make demo``: the main job on the built-in default cluster (a DGX H100 SuperPOD of 4 SUs).

Writes the fabric description, its Slurm exports and its visual report under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fabric_hpc.errors import FabricError


def run(out: Path) -> dict:
    from fabric_hpc.topology import open_fabric, save_spec, write_report
    from fabric_hpc.topology import export as ex

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fab = open_fabric()
    save_spec(fab.spec, out / "fabric.yaml")
    (out / "topology.conf").write_text(ex.topology_conf(fab))
    (out / "gres.conf").write_text(ex.gres_conf(fab))
    summary = write_report(fab, out / "topology-report.html", png=out / "topology-report.png")
    return {"fabric": fab.name, "hosts": len(fab.hosts), "gpus": len(fab.gpus),
            "report": str(summary.html), "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fabric_hpc.demo", description=__doc__)
    parser.add_argument("--out", default="out", help="output directory (default: out)")
    args = parser.parse_args(argv)
    try:
        result = run(Path(args.out))
    except FabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"fabric-hpc demo on {result['fabric']}: {result['hosts']} hosts, {result['gpus']} GPUs")
    print(f"  wrote {args.out}/fabric.yaml, topology.conf, gres.conf")
    print(f"  wrote {result['report']} (open it in a browser) and topology-report.png")
    print(f"  done in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
