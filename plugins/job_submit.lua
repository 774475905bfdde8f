--[[
fabric-hpc job_submit plugin (slurm.conf: JobSubmitPlugins=lua; install as job_submit.lua next to
slurm.conf). See docs/slurm.md.

What it does at submit time:
  * marks multi-node GPU gang jobs (-N >= 2 with --gres=gpu:N / --gpus-per-node=N) and jobs that ask
    for it (--comment=fabric or --comment=fabric:OPTIONS) for fabric placement: the comment becomes
    "fabric[:OPTIONS]". --comment=nofabric opts a gang job out.
  * validates fabric jobs and rejects invalid ones with a message the user sees (slurm.log_user).
  * adds the hosts of an exclude= option to the job's own exclude list (-x), so Slurm never starts the
    job there, whoever starts it (include= has no Slurm equivalent at submit: the agent honours it,
    and when it hands the job over it sets the job's exclude list to every other node).
  * never marks a job array or a heterogeneous job, and refuses --comment=fabric on one (docs/slurm.md).
  * defers a marked job instead of holding it: its begin time is set FALLBACK_S seconds ahead (a --begin
    of the user's own that is still ahead is kept: the agent waits for it). The
    agent pins it (ReqNodeList) and makes it eligible at once (StartTime=now); while it cannot place
    it, it renews the deferral. If the agent dies, the begin time simply passes and Slurm's own
    (topology-aware) scheduler starts the job: a dead agent cannot strand a job.
  * when the agent's heartbeat is older than FALLBACK_S, nothing is deferred at all (jobs go straight
    to Slurm) and the user is told so.
Every string a user controls (comment, GRES text, option values) is data: it is only ever passed to
Slurm's logging as an argument of a "%s" format, shown cut to SHOW_CHARS printable characters, and
checked against a length bound (MAX_COMMENT) before any pattern runs on it. Host lists in options
are counted, never expanded: more than MAX_HOSTLIST_NAMES names is refused at submit (the agent
applies the same budget, fabric_hpc.hostlist.MAX_NAMES).
The three settings below are rewritten by `fabric slurm plugin-config` (or by hand).
]]

local STATE_DIR = "/var/lib/fabric-agent"   -- fabric: state_dir
local FALLBACK_S = 60                       -- fabric: fallback_s
local MAX_GPUS_PER_NODE = 8                 -- fabric: max_gpus_per_node
local PROTOCOL = 1                          -- fabric: protocol (agent and plugin must agree)

local OPTION_KEYS = {within = "word", switches = "int", numa_local = "bool", rail_aligned = "bool",
                     exclude = "hostlist", include = "hostlist", slices = "int", slice_level = "word",
                     tp = "int", pp = "int", tier = "word"}
-- the most a whole-number option may be (le= of fabric_hpc.placement.request.Request's field)
local INT_MAX = {tp = 1024, pp = 1024}
local NO_VAL = 4294967294
local MAX_COMMENT = 1024          -- characters of --comment fabric reads at all
local MAX_GRES = 256              -- characters of the GPU request text
local SHOW_CHARS = 80             -- characters of user text echoed in a message
local MAX_HOSTLIST_NAMES = 100000 -- names one host-list option may stand for

local function show(text)
  -- user text for a message: control characters as '?', cut to SHOW_CHARS
  local s = string.gsub(tostring(text), "%c", "?")
  if #s > SHOW_CHARS then s = string.sub(s, 1, SHOW_CHARS) .. "..." end
  return s
end

local function grouped(n)
  -- 1024 -> "1,024" (thousands separated as the agent's messages write them)
  local s = string.reverse(string.gsub(string.reverse(tostring(n)), "(%d%d%d)", "%1,"))
  return (string.gsub(s, "^,", ""))
end

local function hostlist_count(expr)
  -- names a host list (items separated by ';' or ',') stands for, without expanding it;
  -- nil and a reason when it is not a host list. Same grammar as fabric_hpc/hostlist.py.
  expr = string.gsub(expr, ";", ",")
  local total, depth, item = 0, 0, ""
  local items = {}
  for ch in string.gmatch(expr, ".") do
    if ch == "[" then depth = depth + 1 elseif ch == "]" then depth = depth - 1 end
    if depth < 0 or depth > 1 then return nil, "unbalanced or nested brackets" end
    if ch == "," and depth == 0 then table.insert(items, item); item = "" else item = item .. ch end
  end
  if depth ~= 0 then return nil, "'[' without ']'" end
  table.insert(items, item)
  for _, part in ipairs(items) do
    if part == "" then return nil, "empty item" end
    local names = 1
    for body in string.gmatch(part, "%[([^%]]*)%]") do
      local size = 0
      for r in string.gmatch(body .. ",", "([^,]*),") do
        local lo, hi = string.match(r, "^(%d+)%-(%d+)$")
        if lo == nil then lo = string.match(r, "^(%d+)$"); hi = lo end
        if lo == nil or #lo > 9 or #hi > 9 then return nil, "range item '" .. show(r) .. "' is not N or N-M" end
        if tonumber(hi) < tonumber(lo) then return nil, "range '" .. show(r) .. "' runs backwards" end
        size = size + tonumber(hi) - tonumber(lo) + 1
      end
      names = names * size
      if names > MAX_HOSTLIST_NAMES then return names end
    end
    total = total + names
    if total > MAX_HOSTLIST_NAMES then return total end
  end
  return total
end

local function gpus_per_node(tres)
  -- "gres:gpu:8", "gres/gpu:8", "gres:gpu:h100:8", "gpu:4" (several items separated by commas), and
  -- the count after '=' as Slurm 25.11 writes tres_per_task ("gres/gpu=2", "cpu=10,gres/gpu:gtx=1");
  -- nil when a GPU item cannot be read. Other GRES (gpumem, shard, ...) are not GPUs. A GPU type given
  -- again replaces its earlier count, as in Slurm (gres.c keeps one record per name and type, the last
  -- count): "gres/gpu:8,gres/gpu:8" (--gres=gpu:8 --gpus-per-node=8) is 8; different types add up.
  if tres == nil then return 0 end
  if #tres > MAX_GRES then return nil end
  local counts, order = {}, {}
  for item in string.gmatch(tres, "[^,]+") do
    local rest = string.gsub(item, "^gres[:/]", "")
    local c = string.sub(rest, 4, 4)
    if string.sub(rest, 1, 3) == "gpu" and (c == "" or c == ":" or c == "=") then
      local n = string.match(rest, "[:=](%d+)$")
      if n == nil and (rest == "gpu" or string.match(rest, "^gpu:[%a][%w_.-]*$")) then n = "1" end
      if n == nil or #n > 6 then return nil end
      local gtype = string.match(rest, "^gpu:([%a][%w_.-]*)") or ""
      if counts[gtype] == nil then table.insert(order, gtype) end
      counts[gtype] = tonumber(n)
    end
  end
  local total = 0
  for _, gtype in ipairs(order) do total = total + counts[gtype] end
  return total
end

local TIERS = {high = true, normal = true, spot = true}


-- What would split (the agent's request check says the same, word for word: request.py's
-- _what_divides): the values of key that divide units (the GPUs, or the tp groups for pp; at most
-- eight, up to 1024; for tp only those that fit inside a host of gpn GPUs or fill whole hosts), or the
-- nearest request that keeps key=value (k GPUs per step): nodes of G GPUs, G at most gpn with tp
-- (when given) fitting it, the node count rounded up to what k divides.
local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end
local function what_divides(units, k, key, value, nodes, gpn, tp)
  local fits = {}
  for d = 2, math.min(units, 1024) do
    if units % d == 0 and (key ~= "tp" or gpn % d == 0 or d % gpn == 0) then table.insert(fits, tostring(d)) end
    if #fits == 8 then break end
  end
  local g = gpn
  while g > 1 and tp ~= nil and g % tp ~= 0 and tp % g ~= 0 do g = g - 1 end
  local step = math.floor(k / gcd(g, k))
  local keep = string.format("%d nodes of %d GPUs for %s=%d", math.ceil(nodes / step) * step, g, key, value)
  if #fits == 0 then
    return string.format(" (use %s)", keep)
  end
  local last = table.remove(fits)
  local values = #fits > 0 and (table.concat(fits, ", ") .. " or ") or ""
  return string.format(" (use %s = %s%s; or %s)", key, values, last, keep)
end
local function parallel_problems(seen, nodes, gpn)
  -- tp/pp/slices against the job's size, in the words and order of fabric_hpc/placement/request.py
  -- (Request._consistent): nodes and gpn are nil when not known (job_modify), then only what needs
  -- no size is checked
  local out = {}
  local slices, tp, pp = tonumber(seen.slices), tonumber(seen.tp), tonumber(seen.pp)
  local total = (nodes ~= nil and gpn ~= nil and gpn > 0) and nodes * gpn or nil
  if slices ~= nil and nodes ~= nil and nodes % slices ~= 0 then
    table.insert(out, string.format("%d hosts do not split into %d equal slices", nodes, slices))
  end
  if tp ~= nil then
    if slices ~= nil then
      table.insert(out, "tp sets the slices itself (groups of tp GPUs inside NVLink domains): give tp or slices")
    elseif total ~= nil and total % tp ~= 0 then
      table.insert(out, string.format("%d GPUs do not split into tensor-parallel groups of %d%s", total, tp,
                                      what_divides(total, tp, "tp", tp, nodes, gpn, tp)))
    elseif total ~= nil and gpn % tp ~= 0 and tp % gpn ~= 0 then
      table.insert(out, string.format("a group of tp=%d GPUs must fill whole hosts of %d GPUs or fit inside one " ..
                                      "(tp a multiple or a divisor of gpus_per_node)", tp, gpn))
    end
  end
  if pp ~= nil and total ~= nil and total % (pp * (tp or 1)) ~= 0 then
    local whole = tp ~= nil and string.format(" of whole tensor-parallel groups of %d", tp) or ""
    local groups = (total % (tp or 1) == 0) and math.floor(total / (tp or 1)) or 0
    table.insert(out, string.format("%d GPUs do not split into %d pipeline stages%s%s", total, pp, whole,
                                    what_divides(groups, pp * (tp or 1), "pp", pp, nodes, gpn, tp)))
  end
  if #out == 0 then return nil end
  return table.concat(out, "; ")
end

local function check_combination(seen, nodes, gpn)
  -- what the agent would otherwise hand to Slurm (dropping the options): nil or an error message
  if seen.tier ~= nil and not TIERS[seen.tier] then
    return "option tier must be high, normal or spot, got '" .. show(seen.tier) .. "'"
  end
  if (seen.slices == nil) ~= (seen.slice_level == nil) then
    return "options slices and slice_level go together (e.g. slices=2,slice_level=leaf)"
  end
  return parallel_problems(seen, nodes, gpn)
end

local function check_options(opts, nodes, gpn)
  -- "within=leaf,switches=1,numa_local": returns an error message, or nil and the options by key;
  -- nodes (-N) and gpn (GPUs per node) when known: tp/pp/slices must split them as the agent's
  -- request validation requires
  if opts == "" then return nil, {} end
  local seen = {}
  for part in string.gmatch(opts, "[^,]+") do
    local key, value = string.match(part, "^([%a_]+)=(.*)$")
    if key == nil then key, value = string.match(part, "^([%a_]+)$"), "true" end
    if key == nil then return "cannot read option '" .. show(part) .. "' (expected key=value)" end
    local kind = OPTION_KEYS[key]
    if kind == nil then
      local valid = {}
      for k, _ in pairs(OPTION_KEYS) do table.insert(valid, k) end
      table.sort(valid)
      return "unknown option '" .. show(key) .. "' (valid: " .. table.concat(valid, ", ") .. ")"
    end
    if seen[key] ~= nil then return "option " .. key .. " given twice" end
    seen[key] = value
    if kind == "int" then
      local most = INT_MAX[key]
      if not (string.match(value, "^[1-9]%d*$") and #value <= 9) or (most and tonumber(value) > most) then
        return "option " .. key .. " needs a positive whole number" ..
               (most and " (1 to " .. grouped(most) .. ")" or "") .. ", got '" .. show(value) .. "'"
      end
    end
    if kind == "bool" and not (value == "true" or value == "false" or value == "1" or value == "0") then
      return "option " .. key .. " needs true or false, got '" .. show(value) .. "'"
    end
    if kind == "word" and not string.match(value, "^[%w_-]+$") then
      return "option " .. key .. " needs a name, got '" .. show(value) .. "'"
    end
    if kind == "hostlist" then
      if not string.match(value, "^[%w_.;%-%[%]]+$") then
        return "option " .. key .. " needs a host list like n[1-4] (use ';' between items), got '" .. show(value) .. "'"
      end
      local n, why = hostlist_count(value)
      if n == nil then return "option " .. key .. ": host list '" .. show(value) .. "': " .. why end
      if n > MAX_HOSTLIST_NAMES then
        return "option " .. key .. ": host list '" .. show(value) .. "' stands for more than " ..
               MAX_HOSTLIST_NAMES .. " names"
      end
    end
  end
  return check_combination(seen, nodes, gpn), seen
end

local function exclude_in_slurm(job_desc, seen)
  -- exclude=HOSTS becomes Slurm's own --exclude too (added to any -x): whoever starts the job (the
  -- agent's pin, Slurm after a hand-over, after the deferral ran out, or with the agent down) never
  -- starts it on those hosts. Items are separated by ',' as Slurm writes host lists.
  if seen.exclude == nil then return end
  local hosts = (string.gsub(seen.exclude, ";", ","))
  if job_desc.exc_nodes ~= nil and job_desc.exc_nodes ~= "" then hosts = job_desc.exc_nodes .. "," .. hosts end
  job_desc.exc_nodes = hosts
end

local function agent_alive()
  -- (alive, why not): a heartbeat younger than FALLBACK_S from an agent that speaks our protocol.
  -- Read in <state_dir>.plugin, root's directory (never in the state dir, whose owner could put a FIFO
  -- there: the open would block slurmctld), and only its first 64 bytes (the file is the agent's)
  local f = io.open((string.gsub(STATE_DIR, "/+$", "")) .. ".plugin/heartbeat", "r")
  if f == nil then return false, "the placement agent is not running" end
  local head = f:read(64) or ""
  f:close()
  local beat = tonumber(string.match(head, "^[^\n]*") or "")
  local proto = string.match(head, "^[^\n]*\n([^\n]+)")
  if beat == nil or os.time() - beat > FALLBACK_S then return false, "the placement agent is not running" end
  if proto ~= "protocol=" .. PROTOCOL then
    slurm.log_info("fabric job_submit: the agent's heartbeat says %s, this plugin speaks protocol=%d",
                   show(proto or "no protocol"), PROTOCOL)
    return false, "the placement agent speaks another protocol version than this plugin"
  end
  return true, nil
end

local function wake_agent()
  -- one line, rewritten: the agent watches the mtime, and the file stays one line long. In
  -- <state_dir>.plugin (root's): never in the state dir, where a symlink would be written through
  local f = io.open((string.gsub(STATE_DIR, "/+$", "")) .. ".plugin/wake", "w")
  if f ~= nil then f:write(os.time(), "\n"); f:close() end
end

local function grouped(job_desc)
  -- "a job array" (--array), "a heterogeneous job" (a component of #SBATCH hetjob / sbatch a : b), or nil:
  -- fabric places neither (Slurm copies one ReqNodeList to every task of an array; a het job's leader
  -- cannot be pinned or handed over), so neither is marked, and a fabric comment on them is refused
  if job_desc.array_inx ~= nil and job_desc.array_inx ~= "" then return "a job array (--array)" end
  local offset = job_desc.het_job_offset
  if offset ~= nil and offset >= 0 and offset < NO_VAL then return "a heterogeneous job (hetjob)" end
  return nil
end

local function no_gpus_per_node(job_desc)
  -- the refusal of a fabric job without GPUs per node; it names --gpus-per-task / --gpus when given
  local other = {}
  local per_task, per_job = gpus_per_node(job_desc.tres_per_task), gpus_per_node(job_desc.tres_per_job)
  if per_task == nil or per_task > 0 then table.insert(other, "--gpus-per-task") end
  if per_job == nil or per_job > 0 then table.insert(other, "--gpus") end
  if #other == 0 then return "fabric placement is for GPU jobs: add --gres=gpu:N (or --gpus-per-node=N)" end
  return "fabric places whole nodes of GPUs and reads GPUs per node only: " .. table.concat(other, " and ") ..
         " (GPUs per task or in all) is not read; ask --gpus-per-node=N or --gres=gpu:N instead " ..
         "(e.g. -N2 --gpus-per-node=8)"
end

local function whole(v)
  -- a number of job_desc as a whole number: Slurm 25.11 hands Lua floats (2.0), which print as "2.0"
  if type(v) == "number" and v == math.floor(v) then return math.floor(v) end
  return v
end

local function reject(msg)
  slurm.log_user("%s", "fabric: " .. msg)
  slurm.log_info("fabric job_submit: rejected: %s", msg)
  return slurm.ERROR
end

-- a gang marked only because it is one (no comment) is never refused: what fabric cannot place is Slurm's
local function refuse(asked, msg)
  if asked then return reject(msg) end
  slurm.log_info("fabric job_submit: left to Slurm, unmarked: %s", msg)
  return slurm.SUCCESS
end

function slurm_job_submit(job_desc, part_list, submit_uid)
  local comment = job_desc.comment or ""
  if comment == "nofabric" then return slurm.SUCCESS end
  local asked = comment == "fabric" or string.sub(comment, 1, 7) == "fabric:"
  if asked and #comment > MAX_COMMENT then
    return reject(string.format("--comment is %d characters; fabric reads at most %d", #comment, MAX_COMMENT))
  end
  local group = grouped(job_desc)
  if group ~= nil then
    if not asked then return slurm.SUCCESS end
    return reject("--comment=fabric on " .. group .. ": fabric places single jobs only; submit the tasks as " ..
                  "separate jobs (one sbatch each), or drop --comment=fabric and Slurm places them " ..
                  "(sbatch --comment=nofabric where a #SBATCH --comment=fabric line sets it)")
  end
  local tres = job_desc.tres_per_node
  local nodes = whole(job_desc.min_nodes)
  if nodes == nil or nodes == NO_VAL or nodes == 0 then nodes = 1 end
  local gpn = gpus_per_node(tres)
  local gang = nodes >= 2 and gpn ~= nil and gpn >= 1
  -- a job that is neither asked for fabric nor a readable GPU gang is Slurm's alone: untouched
  if not asked and not (gang and comment == "") then return slurm.SUCCESS end
  if tres ~= nil and #tres > MAX_GRES then
    return refuse(asked, string.format("the GPU request is %d characters; at most %d", #tres, MAX_GRES))
  end
  if gpn == nil then return reject("cannot read the GPU request '" .. show(tres) .. "'") end
  if gpn == 0 then return reject(no_gpus_per_node(job_desc)) end
  if gpn > MAX_GPUS_PER_NODE then
    return refuse(asked, string.format("%d GPUs per node requested, but nodes have %d", gpn,
                                       MAX_GPUS_PER_NODE))
  end
  local max_nodes = whole(job_desc.max_nodes)
  if max_nodes ~= nil and max_nodes ~= NO_VAL and max_nodes ~= nodes then
    return refuse(asked, string.format("give an exact node count (-N %d, not a range): fabric places " ..
                                       "whole gangs; or --comment=nofabric and Slurm places the job", nodes))
  end
  if job_desc.req_nodes ~= nil and job_desc.req_nodes ~= "" then
    return refuse(asked, "fabric chooses the nodes; use --comment=fabric:include=HOSTS instead of -w, or " ..
                         "--comment=nofabric to keep -w and have Slurm place the job")
  end
  local opts = asked and string.sub(comment, 8) or ""
  local err, seen = check_options(opts, nodes, gpn)
  if err ~= nil then return reject("--comment=" .. show(comment) .. ": " .. err) end
  exclude_in_slurm(job_desc, seen)
  job_desc.comment = asked and comment or "fabric"
  local alive, why = agent_alive()
  if alive then
    -- the user's own --begin (a time still ahead) is kept as given: the agent tells it from its deferral
    -- (submit time + FALLBACK_S) and places the job only once it passes
    local begin = job_desc.begin_time
    if begin == nil or begin == NO_VAL or begin <= os.time() then job_desc.begin_time = os.time() + FALLBACK_S end
    wake_agent()
  else
    slurm.log_user("%s", "fabric: " .. why .. "; Slurm places this job itself")
  end
  return slurm.SUCCESS
end

local function refuse_modify(msg)
  -- slurm.log_user is not supported in job_modify (slurmctld logs an error and the user sees only
  -- "Unspecified error"): the reason goes to slurmctld's log, where the admin finds it
  slurm.log_info("fabric job_submit: modify rejected: %s", msg)
  return slurm.ERROR
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  -- a comment changed to fabric[:OPTIONS] after submit is held to the submit-time rules; the
  -- agent re-reads every comment anyway (it trusts nothing from Slurm). The user sees Slurm's
  -- "Unspecified error"; the reason is in slurmctld's log (see docs/slurm.md).
  local comment = job_desc.comment
  if comment == nil or not (comment == "fabric" or string.sub(comment, 1, 7) == "fabric:") then
    return slurm.SUCCESS
  end
  if #comment > MAX_COMMENT then
    return refuse_modify(string.format("--comment is %d characters; fabric reads at most %d", #comment, MAX_COMMENT))
  end
  local err = check_options(string.sub(comment, 8))
  if err ~= nil then return refuse_modify("Comment=" .. show(comment) .. ": " .. err) end
  return slurm.SUCCESS
end

slurm.log_info("fabric job_submit plugin loaded (state_dir=%s, fallback=%ds)", STATE_DIR, FALLBACK_S)
return slurm.SUCCESS
