"""Why a request cannot be placed: cheap necessary conditions checked before any solver runs.

Each check names the binding constraint and what is closest, e.g. "needs 64 GPUs in one nvlink
domain; the largest free block is 48 in r003; at least 3 jobs would have to end".
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from fabric_hpc.placement.contract import Placement, PlacementInfeasible
from fabric_hpc.placement.explain_counts import (  # noqa: F401 (largest_jobs: re-exported)
    _display, _ending, _idle_caps, _numa_most, _pcie_free, _pcie_note, _room_per_host, blocking_jobs,
    domain_capacity, gpu_deficit, largest_jobs, unit_name)
from fabric_hpc.placement.levels import domain_sums
from fabric_hpc.placement.state import DOWN

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem
    from fabric_hpc.placement.request import Request
    from fabric_hpc.topology import Fabric


def _fail(p: Problem, message: str, hint: str | None = None, **facts: Any) -> PlacementInfeasible:
    facts.setdefault("unit", unit_name(p))
    return PlacementInfeasible(message, explanation={"request": p.request.describe(), **facts}, hint=hint)


def _smaller_nodes_hint(p: Problem) -> str:
    hosts = p.eligible_hosts_with(p.gpn)
    if hosts:
        return f"ask for at most {hosts} nodes with {p.gpn} GPUs each"
    most = int(p.levels.host_gpus[p.host_ok].max(initial=0))
    return f"ask for at most {most} GPUs per node (the most any host here has)"


def _never_whole_mixed(p: Problem, eligible_gpus: int) -> None:
    """``nodes=K`` with whole hosts on hosts of several sizes: K hosts of the largest size
    (docs/placement.md, "Limits"), more than the fabric has of that size."""
    r, need = p.request, p.units
    sizes, counts = np.unique(p.levels.host_gpus[p.host_ok & (p.levels.host_gpus > 0)], return_counts=True)
    have, hosts = p.eligible_hosts_with(p.gpn), int((p.host_ok & (p.levels.host_gpus > 0)).sum())
    others = ", ".join(f"nodes={c},gpus={s},exclusive" for s, c in zip(sizes.tolist(), counts.tolist(),
                                                                          strict=True) if s != p.gpn)
    raise _fail(p, f"nodes with whole hosts are hosts of one size, the largest here ({p.gpn} GPUs) unless "
                f"gpus= names another, and only {have} of the fabric's {hosts} hosts have {p.gpn} GPUs; "
                f"{r.describe()} cannot ever fit", f"ask for at most nodes={have}, or name a host size "
                f"({others}), or ask for whole hosts of any size by GPUs (gpus={eligible_gpus},exclusive "
                "at most; docs/placement.md, Limits)", constraint="eligibility", needed=need, never=True,
                largest=have)


def _too_small(p: Problem, eligible_gpus: int, gpus_needed: int, hosts: int, where: str) -> str:
    """What of the fabric is too small for a request that can never fit: its GPUs, or (``-N`` nodes
    × G GPUs where the GPUs would do) its hosts with G GPUs: the words match the hint's fix."""
    if not p.nodes_mode or eligible_gpus < gpus_needed:
        return f"the fabric has only {eligible_gpus} GPUs on {hosts} hosts{where}"
    have = p.eligible_hosts_with(p.gpn)
    if have == hosts:
        return f"the fabric has only {hosts} hosts{where}"
    if have:
        return f"only {have} of the fabric's {hosts} hosts{where} have {p.gpn} GPUs or more"
    most = int(p.levels.host_gpus[p.host_ok].max(initial=0))
    return f"no host of the fabric{where} has {p.gpn} GPUs (the most on one host is {most})"


def _whole_sizes_reach(sizes: np.ndarray, total: int) -> bool:
    """Whether some set of hosts with these GPU counts holds exactly ``total`` GPUs (bounded
    subset sum over the distinct sizes; ``total`` is at most the eligible GPUs, checked before)."""
    reach = np.zeros(total + 1, bool)
    reach[0] = True
    for size, count in zip(*np.unique(sizes[sizes > 0], return_counts=True)):
        k = 1
        while count > 0:  # binary splitting: items of k, 2k, 4k, ... hosts
            step = int(size) * min(k, count)
            if step <= total:
                reach[step:] |= reach[:total + 1 - step].copy()
            count -= min(k, count)
            k *= 2
    return bool(reach[total])


def _diagnose_whole_hosts(p: Problem) -> None:
    """``whole_hosts`` gives hosts whole: a total must be a sum of host sizes, and a per-node
    count must equal the hosts' size."""
    r, sizes = p.request, p.levels.host_gpus[p.host_ok]
    shown = ", ".join(map(str, sorted(set(sizes.tolist()))))
    if p.nodes_mode and r.gpus_per_node is not None:
        exact = int((sizes == r.gpus_per_node).sum())
        if exact < p.units:
            raise _fail(p, f"whole_hosts gives hosts whole, and {exact} eligible hosts have exactly "
                        f"{r.gpus_per_node} GPUs (host sizes here: {shown}); {r.describe()} cannot ever fit",
                        "drop gpus_per_node (each host then gives all its GPUs), or drop whole_hosts",
                        constraint="whole_hosts", needed=p.units, largest=exact, never=True)
    elif not p.nodes_mode and r.gpus is not None and not _whole_sizes_reach(sizes, r.gpus):
        raise _fail(p, f"whole_hosts gives hosts whole (host sizes here: {shown}); no set of hosts holds "
                    f"exactly {r.gpus} GPUs", f"ask for a total that whole hosts make up (e.g. a multiple "
                    f"of {int(sizes.max(initial=1))}), or nodes=K,whole_hosts",
                    constraint="whole_hosts", needed=r.gpus, largest=0, never=True)


#: the request's constraints a permanent failure suggests relaxing (those it sets)
_RELAX = ("numa_local", "rail_aligned", "within", "max_domains", "slices", "tp", "whole_hosts")


def relaxable(request) -> list[str]:
    """The constraints ``request`` sets that relaxing could make fit, in the order hints name them."""
    return [name for name in _RELAX if getattr(request, name)]


#: per fabric: request JSON -> answer, and id(request) -> (request, answer) (the hot path: a
#: placement that fails asks again for the same request object)
_NEVER: weakref.WeakKeyDictionary[Fabric, tuple[dict[str, Any], dict[int, Any]]] = weakref.WeakKeyDictionary()


def diagnose(p: Problem) -> None:
    """Raise :class:`PlacementInfeasible` when a necessary condition fails; else return. A failure
    that would also happen with every GPU of the fabric free says so ("cannot ever fit", with
    ``explanation["never"] = True``) instead of suggesting to wait."""
    try:
        _necessary(p)
    except PlacementInfeasible as exc:
        if exc.explanation.get("never"):
            raise
        never = never_fits(p.fab, p.request)
        raise (never or exc) from None


def never_fits(fab: Fabric, request: Request) -> PlacementInfeasible | None:
    """Why ``request`` cannot be placed on ``fab`` even with every GPU free, else None (necessary
    conditions only: None does not promise a placement). Remembered per fabric and request."""
    from fabric_hpc.placement.problem import Problem
    from fabric_hpc.placement.state import ClusterState

    memo = _NEVER.get(fab)
    if memo is None:
        memo = _NEVER[fab] = ({}, {})
    by_text, by_id = memo
    hit = by_id.get(id(request))
    if hit is not None and hit[0] is request:
        return hit[1]
    key = request.model_dump_json()
    if key not in by_text:
        if len(by_text) > 4096:
            by_text.clear()
        idle = Problem(fab, ClusterState(fab), request)
        try:
            _necessary(idle)
            by_text[key] = None
        except PlacementInfeasible as exc:
            by_text[key] = exc if exc.explanation.get("never") else _never(idle, exc)
    if len(by_id) > 65536:
        by_id.clear()
    by_id[id(request)] = (request, by_text[key])  # holds the request: its id is not reused meanwhile
    return by_text[key]


def _never(p: Problem, exc: PlacementInfeasible) -> PlacementInfeasible:
    """``exc`` (found on an idle fabric) worded as a permanent failure."""
    r = p.request
    binding = exc.explanation.get("constraint")
    binding = "tp" if binding == "slices" and r.tp else binding  # tp groups are slices of the NVLink level
    relax = ([binding] if binding in _RELAX and getattr(r, binding)
             else relaxable(r))
    hint = (f"relax {', '.join(relax)}" if relax else "ask for fewer GPUs") + " (docs/placement.md)"
    message = f"{r.describe()} cannot ever fit this fabric, even with every GPU free: {exc.message}"
    return PlacementInfeasible(message, explanation={**exc.explanation, "never": True}, hint=hint)


def _necessary(p: Problem) -> None:
    """The necessary conditions of :func:`diagnose` on ``p``'s state."""
    r = p.request
    need = p.units
    gpus_needed = need * (p.gpn or 1)
    eligible_gpus = p.eligible_gpus()
    if eligible_gpus < gpus_needed or (p.nodes_mode and p.eligible_hosts_with(p.gpn) < need):
        hosts = int(p.host_ok.sum())
        if r.gpu_model or r.features or r.include or r.exclude:
            types = p.fab.spec.host_types.values()
            where = " matching the request's model/features/include/exclude"
            hint = ("relax gpu_model, features, include or exclude (GPU models here: "
                    f"{', '.join(sorted({t.gpu_model for t in types if t.gpus}))}; features: "
                    f"{', '.join(sorted({f for t in types for f in t.features})) or 'none'})")
        elif r.within == "nvlink" and _pcie_free(p, idle=True):
            _never_nvlink(p, eligible_gpus)
        elif eligible_gpus == 0:
            where, hint = "", "give a fabric whose hosts have GPUs (a generator's gpus=N with N >= 1)"
        elif p.nodes_mode and r.whole_hosts and r.gpus_per_node is None and \
                len(np.unique(p.levels.host_gpus[p.host_ok & (p.levels.host_gpus > 0)])) > 1:
            _never_whole_mixed(p, eligible_gpus)
        elif p.nodes_mode:  # the whole fabric is too small: only a smaller request can fit
            where, hint = "", _smaller_nodes_hint(p)
        else:
            where, hint = "", f"ask for at most {eligible_gpus} GPUs"
        raise _fail(p, f"{_too_small(p, eligible_gpus, gpus_needed, hosts, where)}; "
                    f"{r.describe()} cannot ever fit", hint, constraint="eligibility", needed=need, never=True,
                    largest=p.eligible_hosts_with(p.gpn) if p.nodes_mode else eligible_gpus)
    if r.whole_hosts:
        _diagnose_whole_hosts(p)
    if r.rail_aligned and p.gpn < p.free_mat.shape[1] and not p.patterns:
        numa_ok = int(((_numa_most(p) >= p.gpn) & p.host_ok).sum()) if r.numa_local else need
        if numa_ok < need:  # numa_local alone already fails: it binds, not the rail pattern
            raise _fail(p, _short_of(p, need, numa_ok), "relax numa_local", constraint="numa_local",
                        needed=need, largest=numa_ok)
        raise _fail(p, "rail_aligned: no set of local GPU indices is free on any host", constraint="rail_aligned",
                    needed=need, largest=0)
    total = int(p.cap.sum())
    if total < need:
        jobs = blocking_jobs(p, gpu_deficit(p, need - total))
        down = int((p.state.owner[p.host_ok[p.fab.index.gpu_host]] == DOWN).sum())
        fixes = (["wait for jobs to end"] if jobs else []) + \
            ([f"bring back the {down} GPU(s) that are down"] if down else []) + ["ask for fewer GPUs"]
        raise _fail(p, _short_of(p, need, total)
                    + (f"; at least {jobs} running job(s) would have to end" if jobs else "")
                    + _ending(p, jobs)
                    + (f"; {down} GPU(s) are down" if down else "") + _pcie_note(p), ", or ".join(fixes),
                    constraint="capacity", needed=need, largest=total, blocking_jobs=jobs, down_gpus=down)
    for level, limit, what, name in ((p.within, 1, "within", r.within),
                                     (p.max_level, r.max_domains, "max_domains", r.max_domains_level)):
        if level is not None:
            _check_domains(p, level, int(limit), what, need, _display(name))
    if p.slice_level is not None:
        _check_slices(p)
    _check_network(p)


def _no_nic(fab: Fabric) -> np.ndarray:
    """Per host: whether its type has no NIC (per fabric, read-only)."""
    hit = _NO_NIC.get(fab)
    if hit is None:
        hit = _NO_NIC[fab] = np.array([fab.host_type(h).nics == 0 for h in fab.hosts], bool)
        hit.setflags(write=False)
    return hit


_NO_NIC: weakref.WeakKeyDictionary[Fabric, np.ndarray] = weakref.WeakKeyDictionary()


def _check_network(p: Problem) -> None:
    """A gang wider than one NVLink domain (a host on a DGX or a PCIe host) talks through the NICs
    of every domain it uses, so hosts without a NIC take part only in a gang inside one domain: it
    needs one NVLink domain that holds it, or enough free units on hosts with a NIC. Without this the
    solvers placed such a gang with a collective that cannot run (``comm_ms`` at ``NO_NETWORK_MS``)."""
    no_nic = _no_nic(p.fab)
    if not (no_nic & p.host_ok).any():
        return
    need, level = p.units, p.levels.alias.get("nvlink", 0)
    caps = domain_capacity(p, level)
    with_nic = int(p.cap[~no_nic].sum())
    if int(caps.max(initial=0)) >= need or with_nic >= need:
        return
    room = _idle_caps(p, level, p.request.numa_local)
    idle_nic = int(np.where(no_nic, 0, _idle_caps(p, 0, p.request.numa_local)).sum())
    types = sorted({p.fab.host_type_of[h] for h in np.asarray(p.fab.hosts)[no_nic & p.host_ok]})
    unit, dom = unit_name(p), "NVLink domain" if level else "host"
    what = f"host type{'s' * (len(types) > 1)} {', '.join(types)}"
    facts = {"constraint": "network", "needed": need, "level": p.levels.chain[level]}
    if int(room.max(initial=0)) < need and idle_nic < need:
        most = int(room.max(initial=0)) * (p.gpn or 1)
        wants = (f"{need} hosts with {p.gpn} GPUs each" if p.nodes_mode else f"{need} GPUs") + \
            ("" if p.nodes_mode and not level else f" on more than one {dom}")
        fewer = f"nodes={int(room.max(initial=0))}" if p.nodes_mode else f"at most {most} GPUs"
        hint = f"add nics to the host type ({', '.join(types)}: nics: 0), or ask for {fewer} (one {dom})"
        raise _fail(p, f"needs {wants}, and the hosts of {what} have no NIC to reach another {dom}"
                    + (f" (hosts with a NIC hold only {idle_nic} {unit})" if idle_nic else "")
                    + f"; {p.request.describe()} cannot ever fit", hint, largest=int(room.max(initial=0)),
                    never=True, **facts)
    top = int(np.argmax(caps))
    where = p.levels.dom_names[level][top]
    raise _fail(p, f"needs {need} {unit} in one {dom}, or on hosts with a NIC (the hosts of {what} have "
                f"none); the largest free block is {int(caps[top])} in {where}, and hosts with a NIC have "
                f"{with_nic} free", "wait, or ask for fewer GPUs", largest=max(int(caps[top]), with_nic),
                where=where, **facts)


def network_fails(p: Problem, placed: Placement) -> PlacementInfeasible | None:
    """The failure of a placement whose collective cannot run (an NVLink domain of it has no NIC:
    ``comm_ms`` at :data:`~fabric_hpc.placement.cost.NO_NETWORK_MS`) that the solvers returned as the
    best they found (the checks before them are necessary conditions only); else None."""
    from fabric_hpc.placement.cost import NO_NETWORK_MS

    if placed.breakdown.get("comm_ms", 0.0) < NO_NETWORK_MS:
        return None
    return _fail(p, f"{p.request.describe()}: every placement found spans NVLink domains of hosts without "
                 f"a NIC (the hosts of {', '.join(placed.hosts)} cannot all reach each other), so its "
                 "collective cannot run", "relax within / max_domains / include so that hosts with a NIC can "
                 "be used, or ask for fewer GPUs", constraint="network", needed=p.units, largest=0)


def _numa_note(p: Problem) -> str:
    """``" (a NUMA node here has at most 4 GPUs)"`` for a ``numa_local`` request asking more per host
    than one NUMA node of any eligible host has; else empty."""
    if not (p.request.numa_local and p.nodes_mode):
        return ""
    most = int(_numa_most(p)[p.host_ok].max(initial=0))
    return f" (a NUMA node here has at most {most} GPUs)" if most < (p.gpn or 1) else ""


def _short_of(p: Problem, need: int, total: int) -> str:
    """"needs 16 GPUs; only 8 are free", in the request's units; for ``whole_hosts`` the GPUs on
    entirely free hosts, and all the free ones beside."""
    if p.nodes_mode or not p.request.whole_hosts:
        return f"needs {need} {unit_name(p)}; only {total} are free" + _numa_note(p)
    free = int(p.free_all[p.host_ok].sum())
    return (f"needs {need} GPUs on whole hosts; only {total} GPUs are on entirely free hosts"
            + (f" ({free} are free in all)" if free > total else ""))


def _never_nvlink(p: Problem, eligible_gpus: int) -> None:
    """``within=nvlink`` asking more GPUs than the NVLink domains hold: the rest are PCIe-only."""
    pcie, r = _pcie_free(p, idle=True), p.request
    most = int(_idle_caps(p, p.levels.alias.get("nvlink", 0), False).max(initial=0)) if eligible_gpus else 0
    have = (f"its NVLink domains hold {eligible_gpus} GPUs (at most {most} in one)" if eligible_gpus
            else "it has no NVLink domain")
    hint = ("drop within=nvlink (with tp=N each tensor-parallel group stays inside one host on PCIe-only "
            "hosts)")
    raise _fail(p, f"{r.describe()} needs its GPUs in one NVLink domain, but {pcie} GPUs of this fabric are "
                f"PCIe-only, in no NVLink domain, and {have}: it cannot ever fit",
                hint + (f", or ask for at most {most} GPUs" if most else ""), constraint="within",
                needed=p.units, largest=most, level="nvlink", never=True)


def _check_domains(p: Problem, level: int, limit: int, what: str, need: int, name: str) -> None:
    lv = p.levels
    caps = domain_capacity(p, level)
    order = np.argsort(-caps, kind="stable")
    best = int(caps[order[:limit]].sum())
    if best >= need:
        return
    top = int(order[0])
    where = lv.dom_names[level][top]
    scope = f"one {name}" if limit == 1 else f"at most {limit} {name}s"
    msg = (f"needs {need} {unit_name(p)} in {scope}; the largest free block is {int(caps[top])} in {where}"
           if limit == 1 else f"needs {need} {unit_name(p)} in {scope}; the best {limit} hold {best}")
    jobs, hint = 0, f"wait, or relax {what}"
    if limit == 1:
        jobs, tail, hint = _nearest_domain(p, level, need, top, what)
        msg += tail
    msg += _pcie_note(p) if what == "within" else ""
    raise _fail(p, msg, hint, constraint=what, needed=need, largest=best if limit > 1
                else int(caps[top]), where=where, level=lv.chain[level], blocking_jobs=jobs)


def _nearest_domain(p: Problem, level: int, need: int, top: int, what: str) -> tuple[int, str, str]:
    """(jobs, message tail, hint) for one domain of ``level`` that must hold ``need`` units: of the
    domains that could hold them once jobs end (down GPUs stay down), the one with the most free now
    (ties: the fewest jobs to end), and its largest jobs; or, when down GPUs leave no domain able, that."""
    lv, caps = p.levels, domain_capacity(p, level)
    room = domain_sums(lv, level, _room_per_host(p))
    able = np.flatnonzero(room >= need)
    names = lv.dom_names[level]
    if able.size == 0 and int(_idle_caps(p, level, p.request.numa_local).max(initial=0)) < need:
        return 0, "", f"wait, or relax {what}"  # too small even with no job and nothing down
    if able.size == 0:
        down = np.bincount(lv.host_dom[p.fab.index.gpu_host[p.state.owner == DOWN], level],
                           minlength=len(names))
        near = int(np.argmax(np.where(down > 0, room, -1)))
        return 0, (f"; no {_display(p.request.within if what == 'within' else p.request.max_domains_level)} "
                   f"could hold it even if every job ended: down GPUs leave at most {int(room.max())} "
                   f"(in {names[near]}, {int(down[near])} GPU(s) down there)"), \
            f"bring back the down GPUs, or relax {what}"
    best: tuple[int, int, int, np.ndarray] | None = None
    for d in able.tolist():
        members = np.flatnonzero((lv.host_dom[:, level] == d) & (_room_per_host(p) > 0))
        jobs = blocking_jobs(p, gpu_deficit(p, need - int(caps[d]), members), members)
        if best is None or (-int(caps[d]), jobs) < (-int(caps[best[1]]), best[0]):
            best = (jobs, d, int(caps[d]), members)
    assert best is not None
    jobs, d, _, members = best
    if not jobs:
        return 0, "", f"wait, or relax {what}"
    here = "there" if d == top else f"in {names[d]}"
    return jobs, f"; at least {jobs} job(s) {here} would have to end first{_ending(p, jobs, members)}", \
        f"wait, or relax {what}"


def _groups(p: Problem, n: int) -> str:
    """``n`` slices in words: "1 tensor-parallel group", "4 slices"."""
    what = "tensor-parallel group" if p.request.tp else "slice"
    return f"{n} {what}{'' if n == 1 else 's'}"


def _slice_domain(p: Problem, level: int) -> str:
    """The slice level in words, saying when it is the host ("NVLink domain (a host here)")."""
    name = _display(p.request.slice_level or "nvlink")
    return name + (" (a host here)" if p.levels.chain[level] == "host" and name != "host" else "")


def _check_slices(p: Problem) -> None:
    """Each slice (tp group) needs ``slice_size`` units in one domain of the slice level: the
    permanent reason when an idle fabric could not hold them either, else the largest free block,
    the domain where one more slice is nearest and how many jobs there would have to end."""
    lv, level, size, need = p.levels, int(p.slice_level), int(p.slice_size), int(p.slices)  # type: ignore[arg-type]
    caps = domain_capacity(p, level)
    fit = int((caps // size).sum())
    if fit >= need:
        return
    room = _idle_caps(p, level, p.request.numa_local) // size
    if int(room.sum()) < need:
        raise _never_slices(p, level, size, need)
    top = int(np.argmax(caps))
    short = np.where(room > caps // size, size - caps % size, size + 1)  # units one more slice lacks there
    near = int(np.argmin(short))
    members = np.flatnonzero(lv.host_dom[:, level] == near)
    jobs = blocking_jobs(p, gpu_deficit(p, int(short[near]), members), members)
    names, unit, dom = lv.dom_names[level], unit_name(p), _slice_domain(p, level)
    block = f"the largest free block is {int(caps[top])} in {names[top]}"
    if need == 1:
        msg = f"needs {_groups(p, 1)} of {size} {unit} in one {dom}; {block}"
        msg += f"; at least {jobs} job(s) there would have to end first" if jobs else ""
        msg += _ending(p, jobs, members)
    else:
        msg = f"needs {_groups(p, need)} of {size} {unit}, each in one {dom}; only {fit} fit now ({block})"
        msg += (f"; at least {jobs} job(s) in {names[near]} would have to end for one more"
                f"{_ending(p, jobs, members)}" if jobs else "")
    hint = "wait, or use a smaller tp" if p.request.tp else "wait, or relax slices"
    raise _fail(p, msg, hint, constraint="slices", needed=need, largest=fit, where=names[top],
                free_block=int(caps[top]), level=lv.chain[level], blocking_jobs=jobs,
                unit=_slice_unit(p, size))


def _slice_unit(p: Problem, size: int) -> str:
    """What a slice failure counts (its ``needed`` and ``largest``): "tensor-parallel groups of 8
    GPUs", "slices of 2 hosts with 8 free GPUs"."""
    return f"{'tensor-parallel group' if p.request.tp else 'slice'}s of {size} {unit_name(p)}"


def _never_slices(p: Problem, level: int, size: int, need: int) -> PlacementInfeasible:
    """The permanent failure of ``need`` slices of ``size`` units that an idle fabric cannot hold:
    numa_local (a NUMA node holds too few GPUs), or the domains' size or number."""
    r = p.request
    caps = _idle_caps(p, level, r.numa_local)
    fit, largest = int((caps // size).sum()), int(caps.max(initial=0))
    dom, unit, what = _slice_domain(p, level), unit_name(p), "tensor-parallel group" if r.tp else "slice"
    most_of = f"{largest} such host{'s' * (largest != 1)}" if p.nodes_mode else f"{largest} GPUs"
    held = (f"a {what} needs {size} {unit} in one {dom}, and one holds at most {most_of}" if largest < size
            else f"the {dom}s hold only {fit} {what}(s) of {size} {unit} in all, not {need}")
    fix = f"use a tp of at most {largest * (p.gpn or 1)} GPUs" if r.tp else "use more, smaller slices"
    facts = {"needed": need, "largest": fit, "level": p.levels.chain[level], "never": True,
             "unit": _slice_unit(p, size)}
    if r.numa_local and int((_idle_caps(p, level, False) // size).sum()) >= need:
        most = int(_numa_most(p)[p.host_ok].max(initial=0))
        return _fail(p, f"numa_local: each host gives only the GPUs of one NUMA node (at most {most} here); "
                     f"{held}; {r.describe()} cannot ever fit", f"drop numa_local, or {fix}",
                     constraint="numa_local", **facts)
    return _fail(p, f"{held}; {r.describe()} cannot ever fit", f"{fix} (docs/placement.md)", constraint="slices",
                 **facts)
