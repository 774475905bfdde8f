"""ibnetdiscover dumps written in its real topology file format, the shape of the real fixtures
(fixtures/ibnetdiscover/topograph-dgx-h100-su1-su8.txt, rails-2x2.txt): a ``vendid=``/``devid=``/
``sysimgguid=``/``switchguid=`` or ``caguid=`` head per node, ``Switch 65 "S-<guid>" # "MF0;<name>:MQM9701/U1"
enhanced port 0 lid N lmc 0``, ``Ca 1 "H-<guid>" # "<host> mlx5_<i>"``, port lines printed from both ends
(a CA's with its port GUID), a SHArP "Aggregation Node" CA on each spine, ``4xNDR`` rates."""

from __future__ import annotations

from collections import defaultdict


class Fabric:
    """Switches and cables added in order; :meth:`text` prints them as ibnetdiscover does."""

    def __init__(self) -> None:
        self.switches: dict[str, str] = {}  # name -> GUID (16 hex digits)
        self.cas: dict[str, tuple[str, str]] = {}  # GUID -> (description, its switch)
        self.lines: dict[str, list[tuple[int, str, int, str]]] = defaultdict(list)
        self.free: dict[str, int] = defaultdict(lambda: 1)
        self.lid = 10

    def switch(self, name: str) -> str:
        if name not in self.switches:
            self.switches[name] = f"2c5eab0300{len(self.switches) + 1:06x}"
        return self.switches[name]

    def cable(self, a: str, b: str, rate: str = "4xNDR") -> None:
        """A cable between switches ``a`` and ``b`` (names)."""
        ga, gb = self.switch(a), self.switch(b)
        pa, pb = self.free[ga], self.free[gb]
        self.free[ga], self.free[gb] = pa + 1, pb + 1
        self.lines[ga].append((pa, f"S-{gb}", pb, rate))
        self.lines[gb].append((pb, f"S-{ga}", pa, rate))

    def hca(self, desc: str, switch: str, rate: str = "4xNDR") -> None:
        """One single-port HCA described ``desc`` (``"dgx01 mlx5_0"``) cabled to ``switch``."""
        guid = f"e09d730300{len(self.cas) + 1:06x}"
        gs = self.switch(switch)
        self.cas[guid] = (desc, switch)
        port = self.free[gs]
        self.free[gs] = port + 1
        self.lines[gs].append((port, f"H-{guid}", 1, rate))
        self.lines[guid].append((1, f"S-{gs}", port, rate))

    def text(self, sharp_on: tuple[str, ...] = ()) -> str:
        """The dump; ``sharp_on``: switches with a SHArP aggregation node CA (port 65)."""
        for name in sharp_on:
            self.hca("Mellanox Technologies Aggregation Node", name)
        names = ({f"S-{g}": n for n, g in self.switches.items()}
                 | {f"H-{g}": d for g, (d, _) in self.cas.items()})
        lids = {key: 10 + i for i, key in enumerate(names)}
        out = ["#", "# Topology file: generated on Mon Dec  7 09:30:00 2026", "#",
               f"# Initiated from node {next(iter(self.cas))} port {next(iter(self.cas))}", ""]
        for name, guid in self.switches.items():
            out += ["vendid=0x2c9", "devid=0xd2f2", f"sysimgguid=0x{guid}", f"switchguid=0x{guid}({guid})",
                    f'Switch\t65 "S-{guid}"\t\t# "MF0;{name}:MQM9701/U1" enhanced port 0 lid '
                    f"{lids['S-' + guid]} lmc 0"]
            for port, peer, peer_port, rate in sorted(self.lines[guid]):
                portguid = f"({peer[2:]}) " if peer.startswith("H-") else ""
                out.append(f'[{port}]\t"{peer}"[{peer_port}]{portguid}\t\t# "{names[peer]}" lid '
                           f"{lids[peer]} {rate}")
            out.append("")
        for guid, (desc, _) in self.cas.items():
            out += ["vendid=0x2c9", "devid=0x1021", f"sysimgguid=0x{guid}", f"caguid=0x{guid}",
                    f'Ca\t1 "H-{guid}"\t\t# "{desc}"']
            for port, peer, peer_port, rate in self.lines[guid]:
                out.append(f'[{port}]({guid}) \t"{peer}"[{peer_port}]\t\t# lid {lids["H-" + guid]} lmc 0 '
                           f'"{names[peer]}" lid {lids[peer]} {rate}')
            out.append("")
        return "\n".join(out)


def rail_fabric(sus: int, rails: int, hosts: int, spines: int, *, ports: dict[str, int] | None = None,
                down: dict[str, set[int]] | None = None, cables_up: int = 1) -> Fabric:
    """``sus`` scalable units of ``rails`` rail leaves, ``hosts`` hosts each (``su<k>-dgx<nn>``) with one
    HCA per rail (``ports``: hosts with fewer, cabled to the first rails; ``down``: hosts' rails, from
    0, whose port has no link), every leaf cabled ``cables_up`` times to each of ``spines`` spines."""
    fab = Fabric()
    for su in range(1, sus + 1):
        for rail in range(rails):
            for h in range(1, hosts + 1):
                host = f"su{su}-dgx{h:02d}"
                if rail < (ports or {}).get(host, rails) and rail not in (down or {}).get(host, ()):
                    fab.hca(f"{host} mlx5_{rail}", f"IBLEAF-{rail + 1:02d}-{su:02d}")
    for su in range(1, sus + 1):
        for rail in range(rails):
            for s in range(1, spines + 1):
                for _ in range(cables_up):
                    fab.cable(f"IBLEAF-{rail + 1:02d}-{su:02d}", f"IBSPINE-{s:02d}")
    return fab
