"""The checks of a fabric description beyond its schema (:mod:`fabric_hpc.topology.spec`): names Slurm
would read differently, sizes past what is modelled (counted before anything is expanded), hosts, NVLink
domains and switch groups that clash, dangle or loop. :func:`check_spec` returns each host's type."""

from __future__ import annotations

import difflib
import re

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import NAME, compress, count, expand, outside, slurm_renames
from fabric_hpc.topology.spec import MAX_NVLINK_DOMAIN_GPUS, MAX_SWITCH_NAME, FabricSpec, Locate, SwitchGroup
from fabric_hpc.validation import Loc, list_problems

_RENAMED = ("{what} {name!r} ends in a number past 2^64 - 2: Slurm reads it as a 64-bit number and would "
            "name it differently (scontrol show hostnames); use a number of at most 18 digits")


def switch_names(name: str, count: int) -> list[str]:
    """The graph's names of a group's switches: the group's name, or ``NAME-0`` .. ``NAME-(n-1)``."""
    return [name] if count == 1 else [f"{name}-{i}" for i in range(count)]

#: The largest fabric modelled (a graph of every host, GPU and NIC: ~8 KiB each when built).
MAX_GPUS = 131_072
MAX_ENDPOINTS = 600_000
#: Names beyond the file's hosts that all groups' (or NVLink domains') host lists may name and still be
#: expanded, their unknown hosts listed; past it they are refused unexpanded (_Checker._host_list).
_SLACK = 1024


class _Checker:
    """Semantic rules the schema cannot express; every message names the place and the fix."""

    def __init__(self, spec: FabricSpec, source: str, locate: Locate | None) -> None:
        self.spec, self.source, self.locate = spec, source, locate
        self.problems: list[str] = []
        self.fixes: list[str] = []  # the fix of each kind of problem found, once, in order
        self._dangling_child = False  # a misspelt child group: the orphans it leaves are no more lines
        self._listed: dict[str, int] = {}  # names in the host lists of groups, of NVLink domains

    def fail(self, loc: Loc, text: str, fix: str | None = None) -> None:
        line = self.locate(loc) if self.locate else None
        where = f"{self.source}:{line}" if line else self.source
        self.problems.append(f"{where}: {'.'.join(map(str, loc))}: {text}")
        if fix and fix not in self.fixes:
            self.fixes.append(fix)

    def run(self) -> dict[str, str]:
        host_type = self._hosts()
        self._host_types()
        if not self.problems:  # with the hosts wrong, every link to them would be one more line
            self._nvlink_domains(host_type)
            if self.spec.network is not None:
                self._network(host_type)
        if not self.problems:
            self._nesting()
        if self.problems:
            raise ConfigError(list_problems(self.problems),
                              hint="; ".join(self.fixes) or "see docs/topology.md for the format")
        return host_type

    def _expand(self, loc: Loc, expr: str) -> list[str]:
        try:
            return expand(expr, repeats=False)
        except ConfigError as exc:
            self.fail(loc, exc.message, fix=exc.hint)
            return []

    def _host_list(self, loc: Loc, expr: str, host_type: dict[str, str], kind: str) -> list[str]:
        """The names of a group's or NVLink domain's host list; once the lists of ``kind`` name more
        than the file's hosts (and _SLACK), the rest can only be unknown or repeated: refused unexpanded."""
        names = _count(expr)
        listed = self._listed[kind] = self._listed.get(kind, 0) + names
        if listed <= len(host_type) + _SLACK:
            return self._expand(loc, expr)
        try:
            stray = outside(expr, host_type)
        except ConfigError as exc:
            self.fail(loc, exc.message, fix=exc.hint)
            return []
        if stray is not None:
            self.fail(loc, f"{_short(expr)} names {names:,} hosts, among them unknown host {stray!r} "
                      f"(dangling link); the file has {len(host_type):,} hosts",
                      fix="list only hosts named under hosts:, or add the missing hosts there")
        else:
            self.fail(loc, f"{_short(expr)}: the {kind}s' host lists name {listed:,} hosts up to here, the "
                      f"file has {len(host_type):,}: hosts are listed in more than one {kind}",
                      fix=f"list each host in one {kind} only")
        return []

    def _syntax(self, loc: Loc, expr: str) -> None:
        """Check a host list's syntax and size unexpanded (``outside`` of no hosts: its first name)."""
        try:
            outside(expr, ())
        except ConfigError as exc:
            self.fail(loc, exc.message, fix=exc.hint)

    def _hosts(self) -> dict[str, str]:
        host_type: dict[str, str] = {}
        entry_of: dict[str, int] = {}
        gpus = ends = 0
        for i, entry in enumerate(self.spec.hosts):
            ht = self.spec.host_types.get(entry.type)
            if ht is None:
                valid = ", ".join(sorted(self.spec.host_types))
                self.fail(("hosts", i, "type"), f"unknown host type {entry.type!r} (defined: {valid})")
            # counted before expanding, whatever the type (one of unknown type: a host, no GPU), so a
            # short file cannot expand to a huge list; past the caps nothing more is expanded
            listed = _count(entry.names)
            gpus += listed * (ht.gpus if ht else 0)
            ends += listed * (1 + ht.gpus + ht.nics if ht else 1)
            if gpus > MAX_GPUS or ends > MAX_ENDPOINTS:
                self.fail(("hosts", i, "names"), f"hosts entry {i} ({_short(entry.names)}) brings the "
                          f"fabric to {gpus:,} GPUs and {ends:,} hosts, GPUs and NICs; at most {MAX_GPUS:,} "
                          f"GPUs and {MAX_ENDPOINTS:,} in all are modelled",
                          fix="split the cluster into several fabrics")
                break
            if ht is None:  # its names are checked once its type is known; here only its syntax
                self._syntax(("hosts", i, "names"), entry.names)
                continue
            names = self._expand(("hosts", i, "names"), entry.names)
            bad, dups = None, []
            for name in names:
                if bad is None and not NAME.match(name):
                    bad = name
                    self.fail(("hosts", i, "names"), f"host name {name!r} is not a valid host name (ASCII "
                              "letters, digits, '_', '.', '-'; no spaces, '#', '=', '/' or quotes)")
                elif bad is None and slurm_renames(name):
                    bad = name
                    self.fail(("hosts", i, "names"), _RENAMED.format(what="host name", name=name[:60]))
                if name in host_type:
                    dups.append(name)
                host_type[name] = entry.type
                entry_of.setdefault(name, i)
            if dups:
                self._duplicates(i, dups, entry_of)
        return host_type

    def _duplicates(self, i: int, dups: list[str], entry_of: dict[str, int]) -> None:
        """One line for the hosts that entry ``i`` lists again (host-list compressed), one fix."""
        first = sorted({entry_of[n] for n in dups if entry_of[n] != i})
        where = (f" (already in hosts entr{'ies' if len(first) > 1 else 'y'} {', '.join(map(str, first))})"
                 if first else " (listed twice in this entry)")
        if len(dups) == 1:
            self.fail(("hosts", i, "names"), f"duplicate host name {dups[0]!r}{where}: each host once",
                      fix=f"list {dups[0]!r} in one hosts entry only (remove it from the others, or rename "
                          "one of them)")
            return
        self.fail(("hosts", i, "names"), f"{len(dups)} duplicate host names {compress(dups)}{where}: "
                  "each host once", fix="list each host in one hosts entry only (remove the duplicates from "
                  "all but one entry, or rename them)")

    def _host_types(self) -> None:
        for name, ht in self.spec.host_types.items():
            loc = ("host_types", name)
            if ht.gpu_numa is not None:
                if len(ht.gpu_numa) != ht.gpus:
                    even = [i * ht.sockets // ht.gpus for i in range(ht.gpus)] if ht.gpus <= 16 else None
                    self.fail(loc + ("gpu_numa",), f"has {len(ht.gpu_numa)} entries for {ht.gpus} GPUs",
                              fix=f"give gpu_numa one socket number per GPU ({ht.gpus} entries"
                                  + (f", e.g. {even}" if even else "") + "), or leave it out to spread the "
                                  "GPUs evenly over the sockets")
                if any(not 0 <= s < ht.sockets for s in ht.gpu_numa):
                    self.fail(loc + ("gpu_numa",), f"socket numbers must be in 0..{ht.sockets - 1}")
            if ht.nvswitches and not ht.nvlink_gbps:
                self.fail(loc + ("nvlink_gbps",), "NVSwitches declared but nvlink_gbps is 0")
            if ht.nics and not ht.nic_gbps:
                self.fail(loc + ("nic_gbps",), "NICs declared but nic_gbps is 0",
                          fix="set nic_gbps to each NIC's speed in GB/s (bytes: 400 Gb/s NDR is 50, "
                              "200 Gb/s is 25), or nics: 0 for a host without NICs")
            if self.spec.network is not None and ht.nics == 0:
                self.fail(loc + ("nics",), "a host on the network needs at least one NIC")

    def _nvlink_domains(self, host_type: dict[str, str]) -> None:
        seen: dict[str, str] = {}
        names = set()
        own_switches: dict[str, list[str]] = {}  # host type -> its hosts in multi-host domains
        for i, dom in enumerate(self.spec.nvlink_domains):
            if dom.name in names:
                self.fail(("nvlink_domains", i, "name"), f"duplicate NVLink domain {dom.name!r}")
            names.add(dom.name)
            listed = self._host_list(("nvlink_domains", i, "hosts"), dom.hosts, host_type, "NVLink domain")
            self._unknown_hosts(("nvlink_domains", i, "hosts"), listed, host_type)
            gpus = sum(self.spec.host_types[host_type[h]].gpus for h in set(listed) if h in host_type)
            if gpus > MAX_NVLINK_DOMAIN_GPUS:
                self.fail(("nvlink_domains", i, "hosts"), f"NVLink domain {dom.name!r} has {gpus:,} GPUs; "
                          f"one NVLink domain joins at most {MAX_NVLINK_DOMAIN_GPUS} (NVLink 5)",
                          fix="split the domain into the NVLink domains the hardware has (an NVL72 rack: 18 "
                              "hosts, 72 GPUs)")
            for host in listed:
                if host not in host_type:
                    continue
                elif host in seen:
                    self.fail(("nvlink_domains", i, "hosts"), f"host {host!r} is already in {seen[host]!r}")
                elif self.spec.host_types[host_type[host]].nvswitches:
                    own_switches.setdefault(host_type[host], []).append(host)
                seen[host] = dom.name
        for name, hosts in own_switches.items():  # one line per host type, not per host
            self.fail(("host_types", name, "nvswitches"),
                      f"hosts {compress(sorted(hosts))} of type {name!r} are in multi-host NVLink domains, "
                      "but the type declares its own NVSwitches (a domain's switches are the domain's "
                      f"nvswitches); set nvswitches: 0 in host type {name!r}")

    def _network(self, host_type: dict[str, str]) -> None:
        net = self.spec.network
        assert net is not None
        if len(set(net.levels)) != len(net.levels):
            self.fail(("network", "levels"), "level names must be unique")
        level_of: dict[str, int] = {}
        for i, name in enumerate(net.levels):  # a repeated name keeps its first place: no follow-on errors
            level_of.setdefault(name, i)
        groups: dict[str, int] = {}
        parent: dict[str, str] = {}
        placed: dict[str, str] = {}
        empty: set[str] = set()  # groups with neither hosts nor children: one message each, no more
        broken = len(self.problems)  # a wrong host list: the hosts it missed are no news
        for i, g in enumerate(net.groups):
            loc = ("network", "groups", i)
            if slurm_renames(g.name):
                self.fail(loc + ("name",), _RENAMED.format(what="group name", name=g.name[:60]))
            elif len(g.name) > MAX_SWITCH_NAME:  # topology/tree's switch_record.c: HOST_NAME_MAX
                self.fail(loc + ("name",), f"group name {g.name[:40]!r}... has {len(g.name)} characters; "
                          f"Slurm's topology.conf takes at most {MAX_SWITCH_NAME} (SwitchName): shorten it")
            if g.name in groups:
                self.fail(loc + ("name",), f"duplicate group name {g.name!r}")
            groups[g.name] = i
            if g.level not in level_of:
                self.fail(loc + ("level",), f"unknown level {g.level!r} (levels: {', '.join(net.levels)})")
                continue
            if not (g.hosts or "").strip() and not g.children:
                empty.add(g.name)
                self._empty_group(loc, g.name, g.level, level_of[g.level] == 0)
            elif level_of[g.level] == 0:
                if not g.hosts or g.children:
                    self.fail(loc, "a lowest-level group lists hosts, not children")
                listed = self._host_list(loc + ("hosts",), g.hosts or "", host_type, "lowest-level group")
                self._unknown_hosts(loc + ("hosts",), listed, host_type)
                self._place(loc + ("hosts",), g.name, [h for h in listed if h in host_type], placed)
            elif g.hosts or not g.children:
                self.fail(loc, f"a {g.level!r} group lists child groups, not hosts")
        lists_ok = len(self.problems) == broken
        for i, g in enumerate(net.groups):
            self._group_links(i, g, groups, parent, level_of)
        loose = [host for host in host_type if host not in placed]
        if loose and lists_ok:  # else the wrong list above is the cause: one line, not one per host
            self.fail(("hosts",), f"{len(loose)} host(s) are under no {net.levels[0]!r} group (not "
                      f"connected): {compress(loose)}",
                      fix=f"add them to the hosts of a {net.levels[0]!r} group")
        tops = [g for g in net.groups if g.name not in parent and g.name not in empty]
        if len(tops) > 1 and not self._dangling_child:  # else a misspelt child is the cause: one line
            self.fail(("network", "groups"),
                      f"{len(tops)} groups have no parent ({', '.join(g.name for g in tops[:5])}); "
                      "the network must be one tree: add a top-level group over them")
        self._switch_names(host_type)

    def _place(self, loc: Loc, group: str, listed: list[str], placed: dict[str, str]) -> None:
        """Put ``listed`` under ``group``; hosts already under another group: one line per group."""
        twice: dict[str, list[str]] = {}
        for host in listed:
            if host in placed:
                twice.setdefault(placed[host], []).append(host)
            placed[host] = group
        for other, hosts in twice.items():
            self.fail(loc, f"host {hosts[0]!r} is already under group {other!r}" if len(hosts) == 1 else
                      f"{len(hosts)} hosts are already under group {other!r}: {compress(hosts)}",
                      fix="list each host under one lowest-level group only")

    def _empty_group(self, loc: Loc, name: str, level: str, lowest: bool) -> None:
        """A group with neither hosts nor children: a switch with nothing under it."""
        needs, fix = (("hosts", "give it hosts (hosts: 'n[1-4]')") if lowest
                      else ("child groups", "give it child groups (children: [leaf-a, leaf-b])"))
        self.fail(loc, f"group {name!r} is empty: a {level!r} group needs {needs}, and it lists none",
                  fix=f"{fix}, or remove the group (and its name from its parent's children)")

    def _unknown_hosts(self, loc: Loc, listed: list[str], host_type: dict[str, str]) -> None:
        """One line for the names of a host list that are no host of the file, saying so when they
        differ from hosts of the file only in zero padding (``gpu001`` for ``gpu01``)."""
        unknown = [h for h in listed if h not in host_type]
        if not unknown:
            return
        by_value = {_unpadded(h): h for h in host_type}
        twins = [by_value[_unpadded(h)] for h in unknown if _unpadded(h) in by_value]
        text = f"{len(unknown)} unknown host(s) (dangling link): {compress(unknown)}"
        if twins:
            text += (f"; the hosts are named {compress(twins)}: the lists differ in zero padding "
                     f"({unknown[0]!r} vs {twins[0]!r})")
            self.fail(loc, text, fix="write the host numbers with the same zero padding under hosts: "
                                     "and in the lists that name them")
        else:
            self.fail(loc, text, fix="list only hosts named under hosts:, or add the missing hosts there")

    def _switch_names(self, host_type: dict[str, str]) -> None:
        """Each switch's graph name is its own: a group `l1-0` beside `l1` with 8 switches (named
        `l1-0` .. `l1-7`), or a group named like a host, would merge two vertices of the graph."""
        net = self.spec.network
        assert net is not None
        owner: dict[str, str] = {}
        for i, g in enumerate(net.groups):
            for sw in switch_names(g.name, g.switches):
                other = f"host {sw!r}" if sw in host_type else f"a switch of group {owner[sw]!r}" \
                    if owner.get(sw, g.name) != g.name else None
                if other:
                    self.fail(("network", "groups", i, "name"),
                              f"switch {sw!r} of group {g.name!r} has the name of {other}; rename the group "
                              "(a group of n > 1 switches names them NAME-0 .. NAME-(n-1))")
                    return
                owner[sw] = g.name

    def _nesting(self) -> None:
        """NVLink domain ⊆ rack ⊆ lowest switch group: placement reasons about domains inside
        domains, so a rack or NVLink domain split over two leaf groups is refused here."""
        spec = self.spec
        rack = {h: e.rack for e in spec.hosts if e.rack for h in expand(e.names)}
        leaf: dict[str, str] = {}
        if spec.network is not None:
            for g in spec.network.groups:
                if g.level == spec.network.levels[0] and g.hosts:
                    leaf.update(dict.fromkeys(expand(g.hosts), g.name))
        outer = (("rack", rack), (f"{spec.network.levels[0]} group" if spec.network else "", leaf))
        inner = [(("nvlink_domains", i, "hosts"), f"NVLink domain {d.name!r}", expand(d.hosts))
                 for i, d in enumerate(spec.nvlink_domains)]
        inner += [(("hosts",), f"rack {r!r}", [h for h, x in rack.items() if x == r])
                  for r in sorted(set(rack.values()))]
        for loc, what, hosts in inner:
            for kind, of in outer:
                if kind == "rack" and what.startswith("rack"):
                    continue
                owners: dict[str, list[str]] = {}
                for h in hosts:
                    owners.setdefault(of.get(h) or "", []).append(h)
                if len(owners) > 1:
                    self.fail(loc, _split_domain(what, kind, owners))

    def _group_links(self, i: int, g: SwitchGroup, groups: dict[str, int], parent: dict[str, str],
                     level_of: dict[str, int]) -> None:
        net = self.spec.network
        assert net is not None
        loc = ("network", "groups", i)
        for child in g.children:
            if child not in groups:
                below = [o.name for o in net.groups if o.name not in g.children and o.level in level_of
                         and g.level in level_of and level_of[o.level] == level_of[g.level] - 1]
                near = difflib.get_close_matches(child, below or list(groups), n=1)
                self.fail(loc + ("children",), f"unknown group {child!r} (dangling link)"
                          + (f"; did you mean {near[0]!r}?" if near else ""),
                          fix=f"in the children of {g.name!r}, write {near[0]!r} for {child!r}" if near else
                          f"the children of {g.name!r} must name groups defined under network.groups")
                self._dangling_child = True
                continue
            c = net.groups[groups[child]]
            if c.level in level_of and g.level in level_of and level_of[c.level] != level_of[g.level] - 1:
                self.fail(loc + ("children",),
                          f"child {child!r} is level {c.level!r}, not one below {g.level!r}")
            if child in parent:
                self.fail(loc + ("children",), f"group {child!r} already has parent {parent[child]!r}")
            parent[child] = g.name
            if c.uplink_gbps is None:
                self.fail(("network", "groups", groups[child], "uplink_gbps"),
                          f"group {child!r} has a parent ({g.name!r}) but no uplink_gbps")


def _split_domain(what: str, kind: str, owners: dict[str, list[str]]) -> str:
    """The error of an NVLink domain or rack split over several racks or lowest switch groups."""
    parts = [f"{compress(sorted(hs))} in {kind} {o!r}" if o else f"{compress(sorted(hs))} in no {kind}"
             for o, hs in sorted(owners.items())]
    more = f"; and {len(parts) - 4} more" if len(parts) > 4 else ""
    inner = "an NVLink domain" if what.startswith("NVLink") else "a rack"
    fix = ("set the same rack on all its hosts" if kind == "rack"
           else f"put all its hosts under one {kind} (hosts: of one group)")
    return (f"{what} spans {len(owners)} {kind}s ({'; '.join(parts[:4])}{more}): {inner} must lie inside "
            f"one {kind}; {fix}")


def _count(expr: str) -> int:
    """How many names a host list stands for (0 when it is malformed: expanding it says why)."""
    try:
        return count(expr)
    except ConfigError:
        return 0


def _short(expr: str) -> str:
    return repr(expr if len(expr) <= 60 else expr[:57] + "...")


def _unpadded(name: str) -> str:
    """``gpu001`` → ``gpu1``: a name with its numbers' leading zeros dropped."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), name)


def check_spec(spec: FabricSpec, *, source: str = "<fabric>", locate: Locate | None = None) -> dict[str, str]:
    """Check the rules beyond the schema; return host name → host type name (in file order)."""
    return _Checker(spec, source, locate).run()
