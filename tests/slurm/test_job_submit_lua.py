"""plugins/job_submit.lua under Debian's lua5.4 with a stubbed ``slurm`` table: user text is data.

The stub's ``log_user``/``log_info`` call ``string.format`` on all their arguments, as Slurm's
own (src/lua/slurm_lua.c) do, so a user string used as a format would raise here as it does in
slurmctld. The live tests (tests/slurm_integration) run the same file inside slurmctld.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.plugins import lua_string, render_job_submit
from tests.real import require_real

LUA = shutil.which("lua5.4")

DRIVER = r"""
local msgs = {}
slurm = {SUCCESS = 0, ERROR = -1}
function slurm.log_user(fmt, ...) table.insert(msgs, string.format(fmt, ...)) end
function slurm.log_info(fmt, ...) string.format(fmt, ...) end
dofile(PLUGIN)
for i, job in ipairs(CASES) do
  msgs = {}
  local ok, rc = pcall(slurm_job_submit, job, {}, 1000)
  if not ok then rc = "raised:" .. string.gsub(tostring(rc), "%c", "?") end
  local comment = string.gsub(tostring(job.comment), "%c", "?")
  io.write(i, "\t", tostring(rc), "\t", comment, "\t", table.concat(msgs, "\031"), "\n")
end
"""


def lua_bytes(text: str) -> str:
    """Any text as a Lua literal: every byte a decimal escape."""
    return '"' + "".join(f"\\{b:03d}" for b in text.encode("utf-8", "surrogateescape")) + '"'


def run_cases(tmp_path: Path, cases: list[dict], state_dir: str | None = None) -> list[tuple[str, str, str]]:
    require_real("lua", LUA is not None, "lua5.4 is not installed (Debian: lua5.4)")
    plugin = tmp_path / "job_submit.lua"
    plugin.write_text(render_job_submit(state_dir=state_dir or str(tmp_path / "agent")))
    rows = []
    for case in cases:
        fields = ", ".join(f"{k} = {lua_bytes(v) if isinstance(v, str) else v}" for k, v in case.items())
        rows.append("{" + fields + "}")
    script = tmp_path / "driver.lua"
    script.write_text(f"PLUGIN = {lua_string(str(plugin))}\nCASES = {{{', '.join(rows)}}}\n{DRIVER}")
    proc = subprocess.run([LUA, str(script)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode("utf-8", "replace").split("\n")
    assert lines[-1] == "" and len(lines) == len(cases) + 1, lines  # no message carries a newline
    out = []
    for line in lines[:-1]:
        _, rc, comment, msgs = line.split("\t", 3)
        out.append((rc, comment, msgs))
    return out


def gang(comment: str | None = None, **kw) -> dict:
    job = {"min_nodes": 2, "tres_per_node": "gres:gpu:8", **kw}
    if comment is not None:
        job["comment"] = comment
    return job


HOSTILE = [
    ("fabric:within=%d", "needs a name, got '%d'"),
    ("fabric:within=%s%s%s%n", "needs a name"),
    ("fabric:%x=1", "cannot read option '%x=1'"),
    ("fabric:%d", "cannot read option '%d'"),
    ("fabric:within=a\nb", "needs a name, got 'a?b'"),
    ("fabric:within=\"x'", "needs a name"),
    ("fabric:tier=\\\"", "needs a name"),
    ("fabric:include=a[1-1000000]b[1-1000000]", "stands for more than 100000 names"),
    ("fabric:include=n[1-100001]", "stands for more than 100000 names"),
    ("fabric:exclude=n[1-60000];m[1-60000]", "stands for more than 100000 names"),
    ("fabric:include=n[1-3", "'[' without ']'"),
    ("fabric:include=n[[1-3]]", "nested brackets"),
    ("fabric:include=n[5-1]", "runs backwards"),
    ("fabric:include=n[1-99999999999]", "is not N or N-M"),
    ("fabric:include=n[%d]", "needs a host list"),
    ("fabric:switches=99999999999999999999", "positive whole number"),
    ("fabric:" + "x" * 100_000, "fabric reads at most 1024"),
]


@pytest.mark.parametrize("comment,expect", HOSTILE, ids=[repr(c[:40]) for c, _ in HOSTILE])
def test_hostile_comment_is_rejected_with_a_message(tmp_path: Path, comment: str, expect: str) -> None:
    [(rc, _, msgs)] = run_cases(tmp_path, [gang(comment)])
    assert rc == "-1", msgs                         # slurm.ERROR, not a Lua error
    assert msgs.startswith("fabric: ") and expect in msgs, msgs
    assert len(msgs) < 400                           # user text shown cut


def test_hostile_gres_text(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [gang("fabric", tres_per_node="gres:gpu:%d%s"),
                                gang("fabric", tres_per_node="gres:gpu:99999999999999999999"),
                                gang("fabric", tres_per_node="gres:gpu:1," * 200)])
    assert [r[0] for r in rows] == ["-1", "-1", "-1"], rows
    assert "cannot read the GPU request 'gres:gpu:%d%s'" in rows[0][2]
    assert "cannot read the GPU request" in rows[1][2]
    assert "at most 256" in rows[2][2]


def test_jobs_not_for_fabric_are_left_to_slurm_whatever_their_gres(tmp_path: Path) -> None:
    """Only a job that asks for fabric (or a readable GPU gang) is validated: other GRES, unreadable
    or long GPU text on a job without the comment is Slurm's to accept or reject, untouched."""
    cases = [{"min_nodes": 1, "tres_per_node": "gres/gpu:1," * 40},        # long, single node
             {"min_nodes": 1, "tres_per_node": "gres/gpumem:10G"},         # not a GPU count
             gang(tres_per_node="gres/gpumem:40960"),                      # -N2, no GPUs asked
             {"min_nodes": 1, "tres_per_node": "gres/gpu:2k"},              # Slurm's suffixes
             gang(tres_per_node="gres:gpu:%d%s"),                          # unreadable: not our gang
             {"min_nodes": 1, "tres_per_node": "gres/shard:4,gres/gpu:1"}]
    rows = run_cases(tmp_path, cases)
    assert rows == [("0", "nil", "")] * len(cases), rows  # SUCCESS, comment unset, no message
    [(rc, comment, _)] = run_cases(tmp_path, [gang(tres_per_node="gres/gpumem:8G,gres/gpu:h100:4")])
    assert (rc, comment) == ("0", "fabric")  # the GPU item of a mixed request still makes a gang


def test_a_comment_changed_to_fabric_is_validated_on_modify(tmp_path: Path) -> None:
    require_real("lua", LUA is not None, "lua5.4 is not installed (Debian: lua5.4)")
    plugin = tmp_path / "job_submit.lua"
    plugin.write_text(render_job_submit(state_dir=str(tmp_path / "agent")))
    script = tmp_path / "modify.lua"
    script.write_text(f"PLUGIN = {lua_string(str(plugin))}\n" + r"""
local msgs, users = {}, 0
slurm = {SUCCESS = 0, ERROR = -1}
-- slurmctld does not support log_user in job_modify ("Unspecified error" for the user): never call it there
function slurm.log_user(fmt, ...) users = users + 1 end
function slurm.log_info(fmt, ...) table.insert(msgs, string.format(fmt, ...)) end
dofile(PLUGIN)
for _, c in ipairs({"fabric:within=%s", "fabric:include=n[1-100001]", "fabric:within=leaf", "a note", "nofabric"}) do
  msgs = {}
  io.write(slurm_job_modify({comment = c}, {}, {}, 1000), "\t", table.concat(msgs, "|"), "\n")
end
if users > 0 then io.write("log_user called\n") end
io.write(slurm_job_modify({}, {}, {}, 1000), "\n")
""")
    proc = subprocess.run([LUA, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == ["-1", "-1", "0", "0", "0", "0"], rows
    assert "Comment=fabric:within=%s: option within needs a name" in rows[0][1]
    assert "stands for more than 100000 names" in rows[1][1]


def test_tensor_and_pipeline_parallel_groups_pass_as_options(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [gang("fabric:tp=8,within=leaf"), gang("fabric:tp=eight"),
                                gang("fabric:tp=4,pp=2"), gang("fabric:pp=0")])
    assert [r[0] for r in rows] == ["0", "-1", "0", "-1"], rows
    assert "positive whole number" in rows[1][2] and "positive whole number" in rows[3][2], rows


def test_valid_jobs_still_pass(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [gang(), gang("fabric:include=n[1-4];m[2-3],within=leaf"),
                                gang("nofabric"), {"min_nodes": 1, "comment": "just a note %d"},
                                gang("fabric:exclude=n[1-100000]")])
    assert [r[0] for r in rows] == ["0"] * 5, rows
    assert rows[0][1] == "fabric" and rows[1][1] == "fabric:include=n[1-4];m[2-3],within=leaf"
    assert "agent is not running" in rows[0][2]      # no heartbeat in the state dir
    assert rows[3] == ("0", "just a note %d", "")    # not a fabric job: untouched, no message


@pytest.mark.parametrize("state_dir", ['/srv/a "quoted" dir', "/srv/back\\slash", "/srv/ünï"])
def test_plugin_config_escapes_quotes_and_backslashes(tmp_path: Path, state_dir: str) -> None:
    require_real("lua", LUA is not None, "lua5.4 is not installed (Debian: lua5.4)")
    plugin = tmp_path / "p.lua"
    text = render_job_submit(state_dir=state_dir)
    # the settings are locals: read the value back by appending a line that prints it
    plugin.write_text(text.replace("\nslurm.log_info(", "\nio.write(STATE_DIR)\nslurm.log_info(", 1))
    stub = 'slurm = {SUCCESS = 0, log_info = function(fmt, ...) string.format(fmt, ...) end}\n'
    proc = subprocess.run([LUA, "-e", stub, str(plugin)], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == state_dir


@pytest.mark.parametrize("state_dir", ["/srv/a\nb", "/srv/a\x00b", "/srv/\r", "", "/srv/\t"])
def test_plugin_config_refuses_control_characters(state_dir: str) -> None:
    with pytest.raises(ConfigError):
        render_job_submit(state_dir=state_dir)


def test_plugin_config_cli_exit_code_3(capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main

    assert main(["slurm", "plugin-config", "--state-dir", "/srv/a\nb"]) == 3
    err = capsys.readouterr().err
    assert "control characters" in err and "Traceback" not in err


def test_lua_budget_matches_the_python_hostlist_budget() -> None:
    from fabric_hpc import hostlist

    text = (Path(__file__).resolve().parents[2] / "plugins" / "job_submit.lua").read_text()
    assert f"local MAX_HOSTLIST_NAMES = {getattr(hostlist, 'MAX_NAMES', 100_000)} " in text


@pytest.mark.parametrize(("beat", "deferred", "said"), [
    ("{now}\nprotocol=1\n", True, ""),
    ("{now}\n", False, "speaks another protocol version"),                    # an agent before protocol lines
    ("{now}\nprotocol=2\n", False, "speaks another protocol version"),
    ("{now}\nprotocol=%s%d\n", False, "speaks another protocol version"),      # hostile text: data, not a format
    ("{old}\nprotocol=1\n", False, "agent is not running"),                   # stale
])
def test_jobs_are_deferred_only_for_a_fresh_heartbeat_of_our_protocol(tmp_path: Path, beat, deferred, said) -> None:
    """The agent's heartbeat (agent.heartbeat_text) names its protocol; the plugin defers a gang only
    when it is fresh and speaks the plugin's, else Slurm places the job and the user is told why."""
    import time

    from fabric_hpc.slurm.agent import heartbeat_text

    from fabric_hpc.slurm.plugins import plugin_dir

    state = tmp_path / "agent"
    state.mkdir()
    plugin_dir(state).mkdir()  # where the plugin reads the heartbeat and writes wake (root's, install)
    now = int(time.time())
    (plugin_dir(state) / "heartbeat").write_text(beat.format(now=now, old=now - 3600))
    assert heartbeat_text(now) == f"{now}\nprotocol=1\n"
    [(rc, comment, msgs)] = run_cases(tmp_path, [gang()], state_dir=str(state))
    assert (rc, comment) == ("0", "fabric")
    assert (plugin_dir(state) / "wake").exists() is deferred
    assert said in msgs and (msgs == "") is deferred


@pytest.mark.parametrize("state_dir", ["/var/lib/fäbric", '/srv/a"b\\c', "/srv/状态"])
def test_the_agent_reads_the_state_dir_the_plugin_reads(state_dir: str) -> None:
    """plugin-config writes the state dir as an escaped Lua literal: the agent's plugin check decodes
    it as lua5.4 does (it compared the escaped text and refused its own plugin for /var/lib/fäbric)."""
    require_real("lua", LUA is not None, "lua5.4 is not installed (Debian: lua5.4)")
    from fabric_hpc.slurm.plugins import check_plugin, lua_settings, render_job_submit

    text = render_job_submit(state_dir=state_dir)
    line = next(ln for ln in text.splitlines() if ln.endswith("-- fabric: state_dir"))
    lua = subprocess.run([LUA, "-e", line.split("--")[0] + " io.write(STATE_DIR)"], capture_output=True, check=True)
    assert lua.stdout.decode() == state_dir == lua_settings(text)["state_dir"]
    check_plugin(text, state_dir=state_dir, fallback_s=60, source="job_submit.lua")


def test_options_the_agent_would_drop_are_rejected_at_submit(tmp_path: Path) -> None:
    """What the agent would hand to Slurm (dropping every fabric: option) is refused at submit instead."""
    rows = run_cases(tmp_path, [gang("fabric:tier=high,tier=spot"), gang("fabric:within=leaf,within=spine"),
                                gang("fabric:tier=gold"), gang("fabric:slices=2"), gang("fabric:slice_level=leaf"),
                                gang("fabric:tp=3"), gang("fabric:tp=8,pp=3"), gang("fabric:pp=32"),
                                gang("fabric:tp=8,pp=2,tier=spot")])
    said = [r[2] for r in rows]
    assert [r[0] for r in rows] == ["-1"] * 8 + ["0"], rows
    assert "option tier given twice" in said[0] and "option within given twice" in said[1]
    assert "tier must be high, normal or spot" in said[2]
    assert "slices and slice_level go together" in said[3] and "go together" in said[4]
    assert "16 GPUs do not split into tensor-parallel groups of 3" in said[5]
    assert "16 GPUs do not split into 3 pipeline stages of whole tensor-parallel groups of 8" in said[6]
    assert "16 GPUs do not split into 32 pipeline stages" in said[7]


#: (-N, GPUs per node, fabric options): tp/pp/slices the agent's request validation refuses or takes
PARALLEL = [(4, 6, "tp=4"), (2, 8, "tp=8,slices=2,slice_level=leaf"), (2, 8, "tp=3"), (2, 8, "tp=8,pp=3"),
            (2, 8, "pp=32"), (3, 8, "slices=2,slice_level=leaf"), (2, 6, "tp=4,pp=4"), (1, 8, "tp=8,pp=2"),
            (2, 8, "tp=16"), (2, 4, "tp=8,pp=2"), (4, 8, "tp=4,pp=8"), (2, 8, "tp=8,pp=2,slices=2,slice_level=leaf"),
            (2, 8, "slices=2,slice_level=leaf,pp=4")]


def test_tp_pp_and_slices_are_judged_as_the_agent_judges_them(tmp_path: Path) -> None:
    """The plugin let through tp comments the agent's parser refuses (-N4 --gpus-per-node=6 with tp=4;
    tp with slices), so those jobs went to Slurm without fabric placement: each case here is run
    through the real plugin and the agent's real request validation, which must agree, word for word."""
    from fabric_hpc.slurm.view import _request

    rows = run_cases(tmp_path, [{"min_nodes": n, "tres_per_node": f"gres:gpu:{g}", "comment": f"fabric:{o}"}
                                for n, g, o in PARALLEL])
    for (n, g, opts), (rc, _, said) in zip(PARALLEL, rows, strict=True):
        try:
            _request(n, g, opts)
            agent = None
        except ConfigError as exc:
            agent = exc.message.removeprefix("--comment: ")
        assert (rc == "-1") == (agent is not None), (n, g, opts, rc, said, agent)
        if agent is not None:
            assert said == f"fabric: --comment=fabric:{opts}: {agent}", (n, g, opts)


def test_tp_and_pp_bounds_are_the_agents(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [gang("fabric:tp=2048"), gang("fabric:pp=1025"), gang("fabric:tp=0"),
                                {"min_nodes": 256, "tres_per_node": "gres:gpu:8", "comment": "fabric:tp=1024"}])
    assert [r[0] for r in rows] == ["-1", "-1", "-1", "0"], rows
    assert "option tp needs a positive whole number (1 to 1,024), got '2048'" in rows[0][2]
    assert "option pp needs a positive whole number (1 to 1,024), got '1025'" in rows[1][2]
    assert "option tp needs a positive whole number (1 to 1,024), got '0'" in rows[2][2]
