/* fabric-hpc topology report: renders the inline JSON (no network, no libraries). */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("fabric-data").textContent);
  var H = D.hosts.length, NJ = D.jobs.length, NS = NJ + 2, S = D.state, G = D.groups;
  var FREE = 0, DOWN = 1;
  var HOST_BUDGET = 320, CARD_BUDGET = 24;

  // -- derived indices ---------------------------------------------------------------------
  var start = new Int32Array(H + 1);
  for (var h = 0; h < H; h++) start[h + 1] = start[h] + D.hostTypes[D.hostType[h]].gpus;
  var leafOf = new Int32Array(H).fill(-1);
  G.forEach(function (g, i) { g.h.forEach(function (x) { leafOf[x] = i; }); });
  var counts = G.map(function () { return null; });
  var under = G.map(function () { return null; });
  var depth = G.map(function () { return 0; });
  function hostsUnder(i) {
    if (under[i]) return under[i];
    var out = G[i].h.slice();
    G[i].c.forEach(function (k) { out = out.concat(hostsUnder(k)); });
    return (under[i] = out);
  }
  function hostCounts(x, c) { for (var k = start[x]; k < start[x + 1]; k++) c[S[k]]++; return c; }
  function groupCounts(i) {
    if (counts[i]) return counts[i];
    var c = new Int32Array(NS);
    hostsUnder(i).forEach(function (x) { hostCounts(x, c); });
    return (counts[i] = c);
  }
  function setDepth(i, d) { depth[i] = d; G[i].c.forEach(function (k) { setDepth(k, d + 1); }); }
  D.roots.forEach(function (r) { setDepth(r, 0); });
  var total = new Int32Array(NS);
  for (var k = 0; k < S.length; k++) total[S[k]]++;

  // -- helpers -----------------------------------------------------------------------------
  // bidi controls (U+202E …) in a name would reorder it ("job\u202eevil" shows as "joblive") or the
  // text after it: they are shown as [U+202E]
  var BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function show(s) {
    return String(s).replace(BIDI, function (c) { return "[U+" + c.charCodeAt(0).toString(16).toUpperCase() + "]"; });
  }
  function esc(s) {
    return show(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function nm(s) {  // a name cell: cut with an ellipsis when long, the whole name on hover
    return '<span class="nm" title="' + esc(s) + '">' + esc(s) + "</span>";
  }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }
  function pl(n, word) { return fmt(n) + " " + word + (n === 1 ? "" : "s"); }  // 1 host, 2 hosts
  function color(code) { return code === FREE ? D.colors.free : code === DOWN ? D.colors.down : D.jobs[code - 2].color; }
  function stateName(code) { return code === FREE ? "free" : code === DOWN ? "down" : D.jobs[code - 2].id; }
  function sum(c) { var t = 0; for (var i = 0; i < c.length; i++) t += c[i]; return t; }
  function hostOfGpu(k) {
    var lo = 0, hi = H - 1;
    while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (start[mid] <= k) lo = mid; else hi = mid - 1; }
    return lo;
  }
  function switchName(i, k) { return G[i].s === 1 ? G[i].n : G[i].n + "-" + k; }
  function nvlName(x) {
    var d = D.hostNvl[x];
    if (d < 0) return "none (PCIe only)";
    return D.nvl[d].n + (D.nvl[d].shared ? " (multi-host, " : " (this host, ") + D.nvl[d].gbps + " GB/s per GPU)";
  }
  function dl(rows) {
    return "<dl>" + rows.map(function (r) { return "<dt>" + esc(r[0]) + "</dt><dd>" + r[1] + "</dd>"; }).join("") + "</dl>";
  }
  function sq(code) { return '<i class="sq' + (code === DOWN ? " dn" : "") + '" style="background:' + color(code) + '"></i>'; }
  function bar(c) {
    var t = sum(c) || 1, out = "";
    var order = [];
    for (var s = 2; s < NS; s++) if (c[s]) order.push(s);
    order.sort(function (a, b) { return c[b] - c[a]; });
    if (c[DOWN]) order.push(DOWN);
    order.forEach(function (s) {
      out += '<i class="' + (s === DOWN ? "dn" : "") + '" style="width:' + (100 * c[s] / t).toFixed(3) +
        "%;background:" + color(s) + '" title="' + esc(stateName(s) + ": " + pl(c[s], "GPU")) + '"></i>';
    });
    return '<div class="bar">' + out + "</div>";
  }
  function stateList(c, limit) {
    var rows = [];
    for (var s = 2; s < NS; s++) if (c[s]) rows.push(s);
    rows.sort(function (a, b) { return c[b] - c[a]; });
    var more = rows.length > limit ? rows.length - limit : 0;
    var out = [FREE, DOWN].concat(rows.slice(0, limit)).filter(function (s) { return c[s] || s === FREE; })
      .map(function (s) { return sq(s) + esc(stateName(s)) + " " + fmt(c[s]); }).join("<br>");
    return out + (more ? "<br>… " + more + " more job" + (more === 1 ? "" : "s") : "");
  }

  // -- header, legend, jobs ------------------------------------------------------------------
  function gpuHosts() {  // hosts with GPUs: each is in an NVLink domain unless its GPUs are PCIe-only
    var n = 0;
    for (var x = 0; x < H; x++) if (D.hostTypes[D.hostType[x]].gpus > 0) n++;
    return n;
  }

  function renderHeader() {
    document.getElementById("title").textContent = show(D.title);
    document.getElementById("title").title = show(D.title);  // whole text; CSS cuts it after two lines
    document.getElementById("subtitle").title = show(D.description || D.name);  // whole text; CSS cuts it
    document.getElementById("subtitle").innerHTML = "<bdi>" + esc(D.description || D.name) + "</bdi>" +
      (D.levels.length ? " · switch levels: " + D.levels.map(esc).join(" → ") : "");
    var alloc = S.length - total[FREE] - total[DOWN];
    var shared = sharedLabel();
    var cards = [["hosts", "Hosts", H], ["gpus", "GPUs", S.length], ["free", "Free", total[FREE]],
      ["allocated", "Allocated", alloc], ["down", "Down", total[DOWN]], ["jobs", "Jobs", NJ],
      ["nvl", shared ? shared[0] : !D.nvl.length ? "NVLink domains" :
       gpuHosts() === D.nvl.length ? "NVLink domains (one per host)" : "NVLink domains (one per NVLink host)",
       shared ? shared[1] : D.nvl.length]];
    document.getElementById("counts").innerHTML = cards.map(function (c) {
      var cls = c[0] === "free" ? "free" : c[0] === "allocated" ? "alloc" : c[0] === "down" ? "down" : "";
      return '<div class="card ' + cls + '"><b id="count-' + c[0] + '">' + fmt(c[2]) + "</b><span>" + c[1] + "</span></div>";
    }).join("");
    document.getElementById("overall").innerHTML = bar(total) +
      '<div style="font-size:11px;color:#b8c4d0;margin-top:3px">' + share(alloc) + " allocated · " + share(total[DOWN]) +
      " down</div>";
  }
  function share(n) {  // share of all GPUs, one decimal; a non-zero share never reads 0.0%
    var p = 100 * n / (S.length || 1);
    return n > 0 && p < 0.05 ? "<0.1%" : p.toFixed(1) + "%";
  }
  function sharedLabel() {  // multi-host NVLink domains: [label by their GPU count, how many], or null
    var gpus = {}, sizes = {};
    D.hostNvl.forEach(function (d, x) {
      if (d >= 0 && D.nvl[d].shared) gpus[d] = (gpus[d] || 0) + start[x + 1] - start[x];
    });
    var doms = Object.keys(gpus);
    if (!doms.length) return null;
    doms.forEach(function (d) { sizes[gpus[d]] = 1; });
    var one = Object.keys(sizes).length === 1, n = doms.length;
    return [one ? "NVL" + gpus[doms[0]] + " domain" + (n > 1 ? "s" : "") :
            "NVLink domain" + (n > 1 ? "s" : "") + " (multi-host)", n];
  }
  function renderLegend() {
    var anyShared = D.nvl.some(function (d) { return d.shared; });
    var rows = ['<div class="lg">' + sq(FREE) + "free GPU<b>" + fmt(total[FREE]) + "</b></div>",
      '<div class="lg">' + sq(DOWN) + "down GPU<b>" + fmt(total[DOWN]) + "</b></div>",
      '<div class="lg">' + sq(2 < NS ? 2 : FREE) + "allocated: one colour per job (table below)</div>",
      '<div class="lg"><i class="box"></i>host' + ownDomain() + "</div>"];
    if (anyShared) rows.push('<div class="lg"><i class="box nvlbox"></i>multi-host NVLink domain (e.g. NVL72 rack)</div>');
    if (D.hostNvl.some(function (d) { return d < 0; })) rows.push('<div class="lg"><i class="box dash"></i>host without NVLink (PCIe only)</div>');
    var g = G.findIndex(function (x) { return x.s > 0; });
    if (g >= 0) {  // a switch of this fabric as the sample
      var k = G[g].s > 1 ? 1 : 0;
      rows.push('<div class="lg"><span class="sw">' + esc(switchName(g, k)) + (G[g].s > 1 ? " · rail " + k : "") +
        "</span>&nbsp;" + (G[g].s > 1 ? "switch of a rail" : "leaf switch") + "; hover to see its GPUs</div>");
    }
    document.getElementById("legend").innerHTML = rows.join("");
  }
  function ownDomain() {  // what a plain host box means: its own NVLink domain, by NVSwitch or NVLink mesh
    var sw = 0, mesh = 0;
    D.hostNvl.forEach(function (d, x) {
      if (d >= 0 && !D.nvl[d].shared) { if (D.hostTypes[D.hostType[x]].nvsw > 0) sw++; else mesh++; }
    });
    if (!sw && !mesh) return "";
    return " = its own NVLink domain (" + (sw && mesh ? "NVSwitch or NVLink mesh" : sw ? "NVSwitch" : "NVLink mesh") + ")";
  }
  function examples() {  // the search box's example: a host of this fabric and one of its GPUs
    if (!H) return;
    var x = exampleHost(), n = start[x + 1] - start[x], name = show(D.hosts[x]);
    var box = document.getElementById("search");
    box.placeholder = "Find host or GPU (e.g. " + (n && name.length > 20 ? "" : name + (n ? " or " : "")) +
      (n ? name + "/gpu" + (n - 1) : "") + ") and press Enter";
    box.title = box.placeholder;
  }
  function exampleHost() {  // the shortest name, nearest the middle, among hosts with GPUs if any
    var mid = Math.floor(H / 2), best = -1, key = function (x) {
      return [start[x + 1] > start[x] ? 0 : 1, show(D.hosts[x]).length, Math.abs(x - mid)];
    };
    for (var x = 0; x < H; x++) {
      var a = key(x), b = best < 0 ? null : key(best);
      if (!b || a[0] < b[0] || (a[0] === b[0] && (a[1] < b[1] || (a[1] === b[1] && a[2] < b[2])))) best = x;
    }
    return best;
  }
  var focus = -1;
  function renderJobs() {
    if (!NJ) { document.getElementById("jobs").innerHTML = '<p class="muted">No jobs: every GPU is free or down.</p>'; return; }
    var body = D.jobs.map(function (j, i) {
      return '<tr class="job-row' + (focus === i + 2 ? " focus" : "") + '" data-job="' + esc(j.id) + '" data-code="' + (i + 2) +
        '"><td>' + sq(i + 2) + nm(j.id) + "</td><td>" + j.gpus + "</td><td>" + j.hosts + "</td><td>" +
        j.nvlink_domains + "</td><td>" + j.leaf_groups + "</td></tr>";
    }).join("");
    document.getElementById("jobs").innerHTML = '<div class="scroll"><table><thead><tr><th>job</th><th>GPUs</th>' +
      '<th>hosts</th><th title="NVLink domains spanned">NVL dom.</th><th title="leaf switch groups spanned">leaf grp.</th>' +
      "</tr></thead><tbody>" + body + '</tbody></table></div><p class="muted">Click a job to highlight its GPUs.</p>';
  }

  // -- tree ----------------------------------------------------------------------------------
  var open = {};
  function initialOpen() {
    var level = D.roots.slice();
    level.forEach(function (i) { open[i] = true; });
    while (level.length) {
      var next = [];
      level.forEach(function (i) { next = next.concat(G[i].c); });
      if (!next.length) break;
      var leaves = next.every(function (i) { return !G[i].c.length; });
      var cost = 0;
      next.forEach(function (i) { cost += leaves ? hostsUnder(i).length : G[i].c.length; });
      if (cost > (leaves ? HOST_BUDGET : CARD_BUDGET)) break;
      next.forEach(function (i) { open[i] = true; });
      level = next;
    }
    D.roots.forEach(function (r) { open[r] = rootOpens(r); });
  }
  function rootOpens(r) {  // a root opens unless that alone draws too much: > 24 child boxes or > 320 hosts
    if (G[r].c.length) return G[r].c.length <= CARD_BUDGET;
    return D.roots.length > 1 || hostsUnder(r).length <= HOST_BUDGET;
  }
  function gpuCell(k, rail) {
    var s = S[k], cls = "gpu" + (s === DOWN ? " dn" : "") + (focus >= 0 && s !== focus ? " dim" : "");
    return '<i class="' + cls + '" data-g="' + k + '" data-r="' + rail + '" style="background:' + color(s) + '"></i>';
  }
  function hostBox(x) {
    var t = D.hostTypes[D.hostType[x]], cols = Math.min(t.gpus, 4) || 1, cells = "";
    for (var k = start[x]; k < start[x + 1]; k++) cells += gpuCell(k, t.rail[k - start[x]]);
    return '<div class="host' + (D.hostNvl[x] < 0 ? " nonvl" : "") + '" data-h="' + x + '" data-host="' + esc(D.hosts[x]) +
      '"><div class="hn" title="' + esc(D.hosts[x]) + '">' + esc(D.hosts[x]) +
      '</div><div class="gpus" style="grid-template-columns:repeat(' + cols +
      ',11px)">' + cells + "</div></div>";
  }
  function leafBody(i) {
    var g = G[i], out = "";
    if (g.s > 0) {
      var sw = [];
      for (var k = 0; k < g.s; k++) {
        sw.push('<span class="sw" data-gi="' + i + '" data-sw="' + k + '">' + esc(switchName(i, k)) +
          (g.s > 1 ? " · rail " + k : "") + "</span>");
      }
      out += '<div class="rails">' + (g.s > 1 ? "rail switches:" : "switch:") + " " + sw.join("") + "</div>";
    }
    var blocks = [], cur = null;
    g.h.forEach(function (x) {
      var d = D.hostNvl[x], shared = d >= 0 && D.nvl[d].shared;
      if (!cur || cur.d !== (shared ? d : -2)) { cur = { d: shared ? d : -2, hosts: [] }; blocks.push(cur); }
      cur.hosts.push(x);
    });
    var doms = "";
    blocks.forEach(function (b) {
      var hosts = b.hosts.map(hostBox).join("");
      if (b.d < 0) { out += '<div class="hosts">' + hosts + "</div>"; return; }
      var c = new Int32Array(NS), n = 0;
      b.hosts.forEach(function (x) { hostCounts(x, c); n += start[x + 1] - start[x]; });
      doms += '<div class="nvl" data-nvl="' + esc(D.nvl[b.d].n) + '"><div class="nvlh">NVLink domain <b>' + esc(D.nvl[b.d].n) +
        "</b> · " + pl(b.hosts.length, "host") + " · " + pl(n, "GPU") + " · " + D.nvl[b.d].gbps + " GB/s per GPU · " + c[FREE] +
        ' free</div><div class="hosts">' + hosts + "</div></div>";
    });
    return out + (doms ? '<div class="nvls">' + doms + "</div>" : "");
  }
  function renderGroup(i) {
    var g = G[i], c = groupCounts(i), nh = hostsUnder(i).length, ng = sum(c), isOpen = !!open[i];
    var alloc = ng - c[FREE] - c[DOWN];
    var head = '<div class="ghead" data-gi="' + i + '"><span class="caret">' + (isOpen ? "▾" : "▸") + '</span><span class="lvl" title="' + esc(g.l) + '">' +
      esc(g.l) + "</span><b>" + esc(g.n) + '</b><span class="meta">' + (g.s ? g.s + " switch" + (g.s > 1 ? "es" : "") + " · " : "") +
      (g.c.length ? g.c.length + " group" + (g.c.length > 1 ? "s" : "") + " · " : "") + pl(nh, "host") + " · " + pl(ng, "GPU") + '</span><span class="util">' +
      (100 * alloc / (ng || 1)).toFixed(0) + "% used · <b>" + fmt(c[FREE]) + "</b> free" +
      (c[DOWN] ? ' · <span class="dn">' + fmt(c[DOWN]) + " down</span>" : "") + "</span></div>";
    var body;
    if (!isOpen) body = '<canvas class="mini" data-gi="' + i + '"></canvas>';
    else if (g.c.length) body = '<div class="children">' + g.c.map(renderGroup).join("") + "</div>";
    else body = leafBody(i);
    return '<div class="group' + (isOpen ? " open" : "") + '" data-gi="' + i + '" data-group="' + esc(g.n) +
      '" data-level="' + esc(g.l) + '">' + head + bar(c) + '<div class="gbody">' + body + "</div></div>";
  }
  function miniRows(i, rows) {  // one run of hosts per leaf group under i, so each leaf starts a new line
    rows = rows || [];
    if (!G[i].c.length || G[i].h.length) rows.push(G[i].h);
    G[i].c.forEach(function (k) { miniRows(k, rows); });
    return rows;
  }
  function drawMini(cv, width) {  // one tile per leaf group, tiles wrapped across the box's width like words
    var runs = miniRows(+cv.dataset.gi), cell = 2, per = 4, maxg = 1, widest = 1, gap = 3, zoom = 1.5;
    runs.forEach(function (r) { widest = Math.max(widest, r.length); r.forEach(function (x) { maxg = Math.max(maxg, start[x + 1] - start[x]); }); });
    var bw = Math.min(maxg, per) * cell + 1, bh = Math.ceil(maxg / per) * cell + 1;
    var room = Math.max(300, Math.floor((width || 450) / zoom));
    var cols = Math.max(1, Math.min(widest, Math.floor(room / bw)));
    var tiles = [], x0 = 0, y0 = 0, rowH = 0, W = 0;
    runs.forEach(function (r) {
      if (!r.length) return;
      var w = Math.min(r.length, cols) * bw, h = Math.ceil(r.length / cols) * bh;
      if (x0 && x0 + w > room) { x0 = 0; y0 += rowH + gap; rowH = 0; }
      tiles.push({ r: r, x: x0, y: y0 });
      W = Math.max(W, x0 + w); x0 += w + gap; rowH = Math.max(rowH, h);
    });
    cv.width = Math.max(1, W); cv.height = Math.max(1, y0 + rowH);
    var ctx = cv.getContext("2d");
    tiles.forEach(function (t) {
      t.r.forEach(function (x, n) {
        var ox = t.x + (n % cols) * bw, oy = t.y + Math.floor(n / cols) * bh;
        for (var k = start[x]; k < start[x + 1]; k++) {
          var j = k - start[x];
          ctx.globalAlpha = focus >= 0 && S[k] !== focus ? 0.18 : 1;
          ctx.fillStyle = color(S[k]);
          ctx.fillRect(ox + (j % per) * cell, oy + Math.floor(j / per) * cell, cell, cell);
        }
      });
    });
    cv.style.width = (cv.width * zoom) + "px";
    cv.title = "one block per host, one square per GPU, one tile per leaf group; click to expand";
  }
  function drawAll(root) {  // every box's width read first, then every canvas drawn: one layout, not one each
    var cvs = Array.prototype.slice.call(root.querySelectorAll("canvas.mini"));
    var widths = cvs.map(function (cv) { return cv.parentNode.clientWidth; });
    cvs.forEach(function (cv, n) { drawMini(cv, widths[n]); });
  }
  function renderTree() {
    var tree = document.getElementById("tree");
    tree.innerHTML = D.roots.map(renderGroup).join("");
    drawAll(tree);
  }
  function rerenderGroup(i) {
    var el = document.querySelector('.group[data-gi="' + i + '"]');
    if (!el) { renderTree(); return; }
    var tmp = document.createElement("div");
    tmp.innerHTML = renderGroup(i);
    var fresh = tmp.firstChild;
    el.parentNode.replaceChild(fresh, el);
    drawAll(fresh);
  }

  // -- details -------------------------------------------------------------------------------
  function path(x) {
    var out = [], i = leafOf[x];
    while (i >= 0) { out.push(G[i].l + " " + G[i].n); i = G[i].p; }
    return out.join(" → ");
  }
  function gpuInfo(k) {
    var x = hostOfGpu(k), t = D.hostTypes[D.hostType[x]], j = k - start[x], s = S[k];
    var leaf = leafOf[x], rail = t.rail[j];
    return "<b>GPU " + esc(D.hosts[x] + "/gpu" + j) + "</b>" + dl([["state", sq(s) + esc(stateName(s))],
      ["model", esc(t.model) + " · " + t.mem + " GB"], ["host type", esc(t.name)], ["NUMA node", t.numa[j]],
      ["rail / NIC", rail < 0 ? "none" : rail + (leaf >= 0 && G[leaf].s ? " → " + esc(switchName(leaf, rail % G[leaf].s)) : "")],
      ["NVLink domain", esc(nvlName(x))], ["network", esc(path(x)) || "none"]]);
  }
  function hostInfo(x) {
    var t = D.hostTypes[D.hostType[x]], c = hostCounts(x, new Int32Array(NS));
    var rails = t.rail.filter(function (r) { return r >= 0; });  // a 0-GPU host: no empty parts
    var rows = [["host type", esc(t.name) + (t.features.length ? " (" + esc(t.features.join(", ")) + ")" : "")],
      ["GPUs", t.gpus ? t.gpus + " × " + esc(t.model) + " · " + t.mem + " GB" : "none"],
      ["CPU", pl(t.sockets, "socket") + " × " + pl(t.cores, "core") + (t.tpc > 1 ? " × " + t.tpc + " threads" : "") + " · " + t.ram + " GB RAM"]];
    if (t.gpus) rows.push(["GPU NUMA", t.numa.join(" ")]);
    rows.push(["NICs", !t.nics ? "none" :
      t.nics + " × " + t.nicGbps + " GB/s" + (rails.length ? " (rails " + t.rail.join(" ") + ")" : "")]);
    if (t.gpus) rows.push(["NVLink", esc(nvlName(x))]);
    if (D.racks) rows.push(["rack", esc(D.racks[x] || "–")]);
    rows.push(["network", esc(path(x)) || "none"]);
    if (t.gpus) rows.push(["GPU states", stateList(c, 8)]);
    return "<b>Host " + esc(D.hosts[x]) + "</b>" + dl(rows);
  }
  function groupInfo(i) {
    var g = G[i], c = groupCounts(i);
    var rows = [["level", esc(g.l)], ["switches", g.s ? g.s + " (" + esc(switchName(i, 0)) + (g.s > 1 ? " … " + esc(switchName(i, g.s - 1)) : "") + ")" : "none"],
      ["parent", g.p >= 0 ? esc(G[g.p].n) : "top"], ["hosts", fmt(hostsUnder(i).length)], ["GPUs", fmt(sum(c))],
      ["GPU states", stateList(c, 10)]];
    if (g.c.length) rows.splice(3, 0, ["children", g.c.length + " groups"]);
    return "<b>Group " + esc(g.n) + "</b>" + dl(rows);
  }
  function switchInfo(i, k) {
    var n = 0, c = new Int32Array(NS);
    G[i].h.forEach(function (x) {
      var t = D.hostTypes[D.hostType[x]];
      for (var j = 0; j < t.gpus; j++) if (t.rail[j] >= 0 && t.rail[j] % G[i].s === k) { n++; c[S[start[x] + j]]++; }
    });
    return "<b>Switch " + esc(switchName(i, k)) + "</b>" + dl([["group", esc(G[i].n)], ["rail", G[i].s > 1 ? k : "all"],
      ["GPUs on it", n], ["GPU states", stateList(c, 6)]]);
  }
  function infoFor(el) {
    if (!el) return null;
    if (el.classList.contains("gpu")) return gpuInfo(+el.dataset.g);
    if (el.classList.contains("host")) return hostInfo(+el.dataset.h);
    if (el.classList.contains("sw")) return switchInfo(+el.dataset.gi, +el.dataset.sw);
    if (el.classList.contains("ghead") || el.classList.contains("mini")) return groupInfo(+el.dataset.gi);
    return null;
  }
  function target(ev) { return ev.target.closest ? ev.target.closest(".gpu,.host,.sw,.ghead,canvas.mini") : null; }

  // -- events --------------------------------------------------------------------------------
  var tip = document.getElementById("tip"), tree = document.getElementById("tree");
  tree.addEventListener("mousemove", function (ev) {
    var html = infoFor(target(ev));
    if (!html) { tip.hidden = true; return; }
    tip.innerHTML = html; tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth) x = ev.clientX - tip.offsetWidth - 10;
    if (y + tip.offsetHeight > window.innerHeight) y = ev.clientY - tip.offsetHeight - 10;
    tip.style.left = Math.max(0, x) + "px"; tip.style.top = Math.max(0, y) + "px";
  });
  tree.addEventListener("mouseleave", function () { tip.hidden = true; });
  tree.addEventListener("mouseover", function (ev) {
    var el = ev.target.closest ? ev.target.closest(".sw") : null;
    if (!el) return;
    var body = el.closest(".gbody");
    body.classList.add("railmode");
    body.querySelectorAll('.gpu').forEach(function (c) {
      c.classList.toggle("hl", +c.dataset.r >= 0 && +c.dataset.r % G[+el.dataset.gi].s === +el.dataset.sw);
    });
    el.addEventListener("mouseleave", function () { body.classList.remove("railmode"); }, { once: true });
  });
  tree.addEventListener("click", function (ev) {
    var el = target(ev);
    if (!el) return;
    tip.hidden = true;
    document.getElementById("details").innerHTML = infoFor(el);
    if (el.classList.contains("ghead") || el.classList.contains("mini")) {
      var i = +el.dataset.gi;
      open[i] = !open[i];
      rerenderGroup(i);
    }
  });
  document.getElementById("jobs").addEventListener("click", function (ev) {
    var row = ev.target.closest("tr.job-row");
    if (!row) return;
    focus = focus === +row.dataset.code ? -1 : +row.dataset.code;
    renderJobs(); renderTree(); syncRunRows();
  });
  function setAll(value) {
    G.forEach(function (_, i) { open[i] = value; });
    D.roots.forEach(function (r) { open[r] = value || rootOpens(r); });
    renderTree();
  }
  document.getElementById("expand-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAll(false); });
  document.getElementById("search").addEventListener("keydown", function (ev) {
    if (ev.key !== "Enter") return;
    var q = ev.target.value.trim(), gpu = -1, msg = document.getElementById("search-msg");
    var m = /^(.*)\/gpu(\d+)$/.exec(q), x = D.hosts.indexOf(m ? m[1] : q);
    msg.textContent = msg.title = "";
    if (x < 0) { msg.textContent = msg.title = "no host " + q; return; }
    if (m) { gpu = start[x] + +m[2]; if (gpu >= start[x + 1]) { msg.textContent = msg.title = "no GPU " + q; return; } }
    for (var i = leafOf[x]; i >= 0; i = G[i].p) open[i] = true;
    renderTree();
    var el = tree.querySelector(gpu >= 0 ? '.gpu[data-g="' + gpu + '"]' : '.host[data-h="' + x + '"]');
    var box = el.closest(".host");
    box.classList.add("flash");
    box.scrollIntoView({ block: "center" });
    document.getElementById("details").innerHTML = gpu >= 0 ? gpuInfo(gpu) : hostInfo(x);
  });

  // -- live cluster (fabric slurm report) ------------------------------------------------------
  function span(sec) {  // 45 s, 12 min 5 s, 3 h 20 min, 1 d 17 h: the two largest units
    var t = Math.round(sec), u = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]], out = [];
    for (var i = 0; i < u.length && out.length < 2; i++) {
      var n = Math.floor(t / u[i][1]);
      if (n || out.length) { if (n) out.push(n + " " + u[i][0]); else out.push(""); t -= n * u[i][1]; }
    }
    return out.filter(Boolean).join(" ") || "0 s";
  }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function codeOf(id) { for (var i = 0; i < NJ; i++) if (D.jobs[i].id === id) return i + 2; return -1; }
  function spanText(r) {
    return Object.keys(r.min_spans).map(function (k) {
      var over = r.spans[k] > r.min_spans[k];
      return '<span' + (over ? ' class="spread"' : "") + ">" + esc(k) + " " + r.spans[k] + " (min " + r.min_spans[k] + ")</span>";
    }).join("<br>");
  }
  function decisionText(d) {
    if (!d) return '<span class="muted">–</span>';
    if (d.handoff !== undefined) return "handed to Slurm: " + esc(d.handoff) + '<br><span class="muted">' + esc(d.time) + "</span>";
    return esc(d.solver) + (d.cost === null ? "" : ", cost " + d.cost.toFixed(2)) + "<br>" + esc(d.time) +
      (d.same_hosts ? "" : '<br><span class="spread">Slurm ran it elsewhere</span>');
  }
  function table(id, heads, rows) {
    return '<div class="scroll"><table id="' + id + '"><thead><tr>' + heads.map(function (h) { return "<th>" + h + "</th>"; }).join("") +
      "</tr></thead><tbody>" + rows.join("") + "</tbody></table></div>";
  }
  function renderCluster() {
    var C = D.cluster, el = document.getElementById("cluster"), h = C.health, out = [];
    document.getElementById("subtitle").insertAdjacentHTML("afterend", '<div id="generated">made ' + esc(C.generated) +
      " from Slurm" + (C.backend ? " (" + esc(C.backend) + ")" : "") + "</div>");
    var cards = [["stranded", "free GPUs no waiting gang can use", fmt(h.stranded_gpus) + " / " + fmt(h.free_gpus)],
      ["spread", "multi-host gangs spread beyond the minimum", h.spread_gangs + " / " + h.multi_host_gangs +
        (h.multi_host_gangs ? " (" + pct(h.spread_share) + ")" : "")],
      ["idle", "GPUs idle while gangs wait", fmt(h.idle_while_waiting)],
      ["waiting", "waiting gangs (GPUs)", h.waiting_gangs + " (" + fmt(h.waiting_gpus) + ")"]];
    out.push('<div class="panel"><h2>Cluster health</h2><div id="health">' + cards.map(function (c) {
      return '<div class="card"><b id="health-' + c[0] + '">' + c[2] + "</b><span>" + c[1] + "</span></div>";
    }).join("") + "</div></div>");
    if (C.warnings.length) {
      out.push('<div class="warn" id="warnings"><b>Warnings</b><ul>' + C.warnings.map(function (w) { return "<li>" + esc(w) + "</li>"; }).join("") + "</ul></div>");
    }
    var run = C.running.map(function (r) {
      var code = codeOf(r.job);
      return '<tr class="run-row' + (focus === code ? " focus" : "") + '" data-job="' + esc(r.job) + '" data-code="' + code +
        '" data-color="' + (code >= 2 ? D.jobs[code - 2].color : "") + '"><td>' + (code >= 2 ? sq(code) : "") + nm(r.job) +
        "</td><td>" + nm(r.name) + "</td><td>" + nm(r.user) + "</td><td>" + nm(r.tier) + (r.fabric ? " · fabric" : "") +
        "</td><td>" + nm(r.hostlist) + "</td><td>" + r.gpus + "</td><td>" + spanText(r) + "</td><td>" +
        (r.cost ? r.cost.total.toFixed(2) + " (" + r.cost.comm_ms.toFixed(2) + " ms)" : "–") + "</td><td>" +
        decisionText(r.decision) + "</td></tr>";
    });
    out.push('<div class="panel"><h2>Running jobs (' + C.running.length + ")</h2>" + (run.length ? table("running-jobs",
      ["job", "name", "user", "tier", "hosts", "GPUs", "domains spanned (min possible)", "modelled cost (all-reduce)",
        C.agent_log ? "agent decision" : "agent decision (no --state-dir)"], run) +
      '<p class="muted">Click a job to highlight its GPUs.</p>' : '<p class="muted">No running jobs.</p>') + "</div>");
    var pend = C.pending.map(function (p) {
      return '<tr class="pend-row" data-job="' + esc(p.job) + '"><td>' + nm(p.job) + "</td><td>" + nm(p.name) + "</td><td>" +
        nm(p.user) + "</td><td>" + nm(p.tier) + (p.fabric ? " · fabric" : "") + "</td><td>" + p.nodes + " × " + p.gpus_per_node +
        '</td><td class="slurm-reason" title="' + esc(p.slurm_reason_words) + '">' + esc(p.slurm_reason) + "</td><td>" +
        (p.agent_reason ? esc(p.agent_reason) + ' <span class="muted">' + esc(p.agent_reason_time || "") + "</span>" :
          p.pinned ? "pinned to " + esc(p.pinned) : '<span class="muted">–</span>') + "</td><td>" +
        (p.waiting_s === null ? "–" : '<span title="' + fmt(Math.round(p.waiting_s)) + ' s">' + span(p.waiting_s) + "</span>") + "</td></tr>";
    });
    out.push('<div class="panel"><h2>Pending jobs (' + C.pending.length + ")</h2>" + (pend.length ? table("pending-jobs",
      ["job", "name", "user", "tier", "nodes × GPUs", "Slurm's reason", "agent's reason", "waiting"], pend) :
      '<p class="muted">Nothing pending.</p>') + "</div>");
    if (C.nodes.length) {
      out.push('<div class="panel"><h2>Nodes not usable (' + C.nodes.length + ")</h2>" + table("bad-nodes", ["node", "state", "flags"],
        C.nodes.map(function (n) {
          return '<tr data-node="' + esc(n.node) + '"><td>' + esc(n.node) + "</td><td>" + esc(n.state) + "</td><td>" + esc(n.flags.join(", ")) + "</td></tr>";
        })) + "</div>");
    }
    el.innerHTML = out.join("");
    el.hidden = false;
  }
  document.getElementById("cluster").addEventListener("click", function (ev) {
    var row = ev.target.closest("tr.run-row");
    if (!row || +row.dataset.code < 2) return;
    focus = focus === +row.dataset.code ? -1 : +row.dataset.code;
    renderJobs(); renderTree(); syncRunRows();
  });
  function syncRunRows() {
    document.querySelectorAll("#cluster tr.run-row").forEach(function (r) { r.classList.toggle("focus", +r.dataset.code === focus); });
  }

  renderHeader(); renderLegend(); examples(); renderJobs(); initialOpen(); renderTree();
  if (D.cluster) renderCluster();
  document.body.dataset.ready = "1";
})();
