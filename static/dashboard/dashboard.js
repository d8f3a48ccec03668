// Live pool dashboard: keeps the server-rendered snapshot up to date over a WebSocket.
//
//   server ── {"kind":"snapshot"} ──▶ state = snapshot; render everything
//          ── {"kind":"update"}   ──▶ merge deltas (workers / pool / events); render parts
//          ── {"kind":"control_result"} ──▶ show the outcome of a button press
//   buttons ── {"action":…} ──▶ server (falls back to the plain form POST when offline)
//
// No build step, no framework: DOM updates use textContent only (never innerHTML with
// data). window.poolDashboard.latencies holds Date.now() - sent_at of every applied
// update, and #dashboard[data-last-latency-ms] the latest, for the benchmark.
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  const seed = document.getElementById("dashboard-snapshot");
  if (!root || !seed) return;

  const MAX_EVENTS = 30;
  const MAX_LATENCIES = 20000;
  const CHART_POINTS = 30;
  const CHART_REDRAW_MS = 15000;
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];
  const RESYNC_MS = 60000; // a full snapshot now and then: the channel layer may drop updates
  const $ = (id) => document.getElementById(id);

  let state = JSON.parse(seed.textContent);
  let ws = null;
  let attempt = 0;
  let inFlight = null;
  let refreshAsked = 0;
  let chart = null;
  const latencies = [];
  window.poolDashboard = { latencies, state: () => state, updates: 0, snapshots: 0 };

  // ---- formatting (mirrors templatetags/dashboard_format.py) ------------------------
  function duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) return "";
    const whole = Math.floor(seconds);
    const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (h) return `${h}:${two(m)}:${two(s)}`;
    if (m) return `${m}:${two(s)}`;
    return `${s}s`;
  }
  function toMillis(at) {
    if (typeof at === "number") return at > 1e11 ? at : at * 1000;
    if (typeof at === "string") return Date.parse(at);
    return NaN;
  }
  function clock(at) {
    const ms = toMillis(at);
    return isFinite(ms) ? new Date(ms).toISOString().slice(11, 19) : "";
  }
  function sum(counts, statuses) {
    return statuses.reduce((total, s) => total + (counts[s] || 0), 0);
  }
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ---- headline (mirrors snapshot.headline) -----------------------------------------
  function headline() {
    const plan = state.plan;
    for (const wanted of ["ERROR", "PAUSED"]) {
      const matching = state.hosts.filter((h) => h.state === wanted);
      if (matching.length) {
        const withReason = matching.find((h) => h.reason);
        return { state: wanted.toLowerCase(), reason: withReason ? withReason.reason : plan.reason };
      }
    }
    if (plan.state === "paused") return { state: "paused", reason: plan.reason };
    if (plan.state === "running" && !state.hosts.length)
      return { state: "running", reason: "waiting for a pool host (manage.py runpool)" };
    if (state.hosts.some((h) => h.state === "RUNNING" || h.state === "STARTING"))
      return { state: "running", reason: "" };
    return { state: plan.state, reason: plan.reason };
  }

  function renderHeadline() {
    const line = headline();
    $("headline").className = `headline state-${line.state}`;
    $("pool-state").textContent = line.state;
    $("pool-reason").textContent = line.reason || "";
    $("plan-state").textContent = state.plan.state;
    $("plan-size").textContent = state.plan.pool_size;
    $("plan-version").textContent = state.plan.version;
    const hosts = $("hosts");
    hosts.replaceChildren();
    if (!state.hosts.length) hosts.append(el("span", "host none", "no pool host running"));
    for (const h of state.hosts) {
      const chip = el("span", `host state-${String(h.state).toLowerCase()}`, `${h.host}: ${h.state}`);
      chip.title = h.reason || "";
      hosts.append(chip);
    }
  }

  // ---- controls ---------------------------------------------------------------------
  function selectedBatch() {
    const select = $("batch-select");
    const id = select ? Number(select.value) : NaN;
    return state.batches.find((b) => b.id === id) || null;
  }

  function renderBatchOptions() {
    const select = $("batch-select");
    if (!select) return;
    const keep = select.value || String(state.plan.batch_id || "");
    select.replaceChildren();
    if (!state.batches.length) select.append(new Option("no batches yet", ""));
    for (const b of state.batches) {
      const option = new Option(`#${b.id} ${b.name} — ${b.queued} queued, ${b.failed} failed`, b.id);
      select.append(option);
    }
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }

  function renderControls() {
    if (!state.can_control || !$("controls")) return;
    const allowed = new Set(state.allowed || []);
    const batch = selectedBatch();
    for (const button of $("controls").querySelectorAll("button[data-action]")) {
      const action = button.dataset.action;
      let ok = allowed.has(action);
      if (action === "start") ok = ok && !!batch && batch.queued > 0;
      if (action === "retry_failed") ok = !!batch && batch.failed > 0;
      button.disabled = !ok || inFlight !== null;
    }
    const size = $("scale-size");
    if (size && document.activeElement !== size && !size.dataset.dirty) size.value = state.plan.pool_size;
  }

  function showResult(text, kind) {
    const out = $("control-result");
    if (!out) return;
    out.textContent = text;
    out.className = `control-result ${kind}`;
  }

  function onSubmit(event) {
    const form = event.target;
    const button = event.submitter;
    if (!button || !button.dataset.action) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      // Offline: let the plain form post; the user has confirmed already.
      if (button.dataset.confirm) {
        const confirmed = el("input");
        Object.assign(confirmed, { type: "hidden", name: "confirmed", value: "yes" });
        form.append(confirmed);
      }
      return;
    }
    event.preventDefault();
    const fields = new FormData(form);
    const message = { action: button.value };
    if (fields.get("batch")) message.batch = Number(fields.get("batch"));
    if (fields.get("size")) message.size = Number(fields.get("size"));
    if (button.dataset.immediate || fields.get("immediate")) message.immediate = true;
    ws.send(JSON.stringify(message));
    inFlight = setTimeout(() => {
      inFlight = null;
      showResult("No answer from the server yet; the page will catch up when it does.", "error");
      renderControls();
    }, 10000);
    showResult(`Sending ${button.textContent.trim().toLowerCase()}…`, "pending");
    renderControls();
  }

  function onControlResult(message) {
    if (inFlight !== null) clearTimeout(inFlight);
    inFlight = null;
    showResult(message.message || (message.ok ? "Done." : "Refused."), message.ok ? "ok" : "error");
    const size = $("scale-size");
    if (size) delete size.dataset.dirty;
    renderControls();
  }

  // ---- progress and counters --------------------------------------------------------
  function recount(batch, counts, total) {
    const statuses = state.statuses;
    batch.counts = counts;
    batch.total = typeof total === "number" ? total : Object.values(counts).reduce((a, b) => a + b, 0);
    batch.pending = sum(counts, statuses.pending);
    batch.completed = sum(counts, statuses.success);
    batch.failed = sum(counts, statuses.failure);
    batch.done = batch.total - batch.pending;
    batch.percent = batch.total ? Math.round((1000 * batch.done) / batch.total) / 10 : 0;
  }

  function shownCounts(counts, active) {
    // Mirrors snapshot.shown_counts: RUNNING is the POs on a worker (never more than the
    // busy workers); the rest of RUNNING is claimed ahead, waiting on its host.
    const shown = [];
    for (const [status, n] of Object.entries(counts)) {
      if (status !== "RUNNING") {
        shown.push({ status, label: status, n });
        continue;
      }
      const onWorkers = Math.min(n, active);
      shown.push({ status, label: status, n: onWorkers });
      shown.push({ status: "CLAIMED", label: "queued on host", n: n - onWorkers });
    }
    return shown;
  }

  function countActive() {
    // POs a worker is on now (mirrors snapshot._busy); RUNNING also counts claimed ones.
    const hosts = new Set(state.hosts.filter((h) => h.batch_id === state.batch.id).map((h) => h.host));
    return Object.values(state.workers).filter((c) => c.state === "busy" && hosts.has(c.host)).length;
  }

  function renderProgress() {
    const b = state.batch;
    const name = $("batch-name");
    name.replaceChildren();
    if (!b) name.textContent = "No batch running";
    else if (b.url) {
      const link = el("a", "", `#${b.id} ${b.name}`);
      link.href = b.url;
      name.append(link);
    } else name.textContent = `#${b.id} ${b.name}`;
    const total = b ? b.total : 0;
    const pct = (n) => (total ? Math.min(100, Math.round((100 * n) / total)) : 0);
    $("bar-ok").style.width = `${pct(b ? b.completed : 0)}%`;
    $("bar-failed").style.width = `${pct(b ? b.failed : 0)}%`;
    $("progress-bar").setAttribute("aria-valuenow", b ? b.percent : 0);
    $("progress-done").textContent = b ? b.done : 0;
    $("progress-total").textContent = total;
    $("progress-percent").textContent = b ? b.percent : 0;
    $("throughput").textContent = b && b.throughput_per_min ? Number(b.throughput_per_min).toFixed(1) : 0;
    $("eta").textContent = (b && duration(b.eta_seconds)) || "—";
    for (const dd of root.querySelectorAll("[data-counter]")) {
      dd.textContent = b ? b[dd.dataset.counter] || 0 : 0;
    }
    const list = $("by-status");
    list.replaceChildren();
    for (const { status, label, n } of b ? shownCounts(b.counts, b.active || 0) : []) {
      if (!n) continue;
      const item = el("li", "", `${label} `);
      item.dataset.status = status;
      item.append(el("b", "", n));
      list.append(item);
    }
  }

  // ---- worker cards (keyed, updated in place) ---------------------------------------
  function cardOrder(a, b) {
    const [ca, cb] = [state.workers[a], state.workers[b]];
    const [ha, hb] = [String(ca.host || ""), String(cb.host || "")];
    if (ha !== hb) return ha < hb ? -1 : 1;
    const [wa, wb] = [String(ca.worker_id), String(cb.worker_id)];
    return wa.length - wb.length || (wa < wb ? -1 : wa > wb ? 1 : 0);
  }

  function cardNode(key) {
    let node = $("workers").querySelector(`article[data-key="${CSS.escape(key)}"]`);
    if (!node) {
      node = $("card-template").content.firstElementChild.cloneNode(true);
      node.dataset.key = key;
    }
    return node;
  }

  // Write only what differs: an unchanged write still invalidates style and layout, and
  // most updates change one or two fields of one card.
  function setText(node, value) {
    const text = String(value);
    if (node.textContent !== text) node.textContent = text;
  }
  function setClass(node, name) {
    if (node.className !== name) node.className = name;
  }

  function fillPo(dd, card) {
    // The PO's number, linked to its page (views.worker_po: the host's batch + number).
    const host = state.hosts.find((h) => h.host === card.host);
    const batchId = host && host.batch_id != null ? host.batch_id : card.batch_id;
    const href = card.po_number && batchId != null && state.worker_po_url
      ? `${state.worker_po_url}${batchId}/${encodeURIComponent(card.po_number)}` : "";
    const text = card.po_number || "—";
    if (dd.dataset.href === href && dd.textContent === text) return;
    dd.dataset.href = href;
    if (!href) return dd.replaceChildren(text);
    const link = el("a", "", text);
    link.href = href;
    dd.replaceChildren(link);
  }

  function fillCard(node, card) {
    setClass(node, `card state-${card.state || "unknown"}`);
    const wid = node.querySelector(".wid");
    if (wid.dataset.key !== node.dataset.key) {
      wid.replaceChildren(el("b", "", card.worker_id), " ", el("span", "muted", card.host));
      wid.dataset.key = node.dataset.key;
    }
    setText(node.querySelector(".badge"), card.state || "?");
    const field = (name) => node.querySelector(`[data-f="${name}"]`);
    fillPo(field("po_number"), card);
    setText(field("phase"), card.phase || "—");
    const elapsed = field("elapsed");
    const since = card.po_number && card.po_started_at ? String(card.po_started_at) : "";
    if (elapsed.dataset.since !== since) elapsed.dataset.since = since;
    setText(elapsed, since ? duration(Date.now() / 1000 - card.po_started_at) : "—");
    setText(field("done"), card.done || 0);
    setText(field("restarts"), card.restarts || 0);
    const memory = card.memory_mb != null ? Math.round(card.memory_mb) : "?";
    setText(field("memory"), `${memory} / ${card.memory_limit_mb || "?"} MB`);
    const share = card.memory_limit_mb ? Math.min(100, (100 * (card.memory_mb || 0)) / card.memory_limit_mb) : 0;
    const bar = node.querySelector(".mem span");
    const width = `${Math.round(share)}%`;
    if (bar.style.width !== width) bar.style.width = width;
    setClass(bar, share >= 90 ? "high" : share >= 70 ? "warn" : "");
  }

  function renderWorkers() {
    const box = $("workers");
    const keys = Object.keys(state.workers).sort(cardOrder);
    const nodes = keys.map((key) => {
      const node = cardNode(key);
      fillCard(node, state.workers[key]);
      return node;
    });
    if (!nodes.length) box.replaceChildren(el("p", "empty", "No workers running."));
    else box.replaceChildren(...nodes);
    $("worker-count").textContent = keys.length;
  }

  function updateCard(key) {
    const existing = $("workers").querySelector(`article[data-key="${CSS.escape(key)}"]`);
    if (!existing) return renderWorkers(); // a new card: re-sort the grid
    fillCard(existing, state.workers[key]);
  }

  function tickElapsed() {
    const now = Date.now() / 1000;
    for (const dd of root.querySelectorAll('[data-f="elapsed"]')) {
      const since = Number(dd.dataset.since);
      if (since) setText(dd, duration(now - since));
    }
  }

  // ---- events and failures ----------------------------------------------------------
  function renderEvents() {
    const list = $("events");
    list.replaceChildren();
    if (!state.events.length) list.append(el("li", "empty", "Nothing yet."));
    for (const e of state.events) {
      const item = el("li", `level-${e.level || "info"}`);
      item.append(el("time", "", clock(e.at)), " ", el("span", "kind", e.kind), " ",
        el("span", "host", e.host || ""), ` ${e.message || ""}`);
      list.append(item);
    }
  }

  // A failure's message shows three lines; a click (or tap) shows all of it, and keeps
  // it open across redraws.
  const expanded = new Set();
  function toggleMessage(event) {
    const message = event.target.closest(".failure .msg");
    if (!message) return;
    const po = Number(message.closest(".failure").dataset.po);
    if (message.classList.toggle("open")) expanded.add(po);
    else expanded.delete(po);
  }

  function renderFailures() {
    const box = $("failures");
    box.replaceChildren();
    if (!state.failures.length) box.append(el("p", "empty", "No failures."));
    for (const f of state.failures) {
      const item = el("article", "failure");
      item.dataset.po = f.po_id;
      if (f.screenshot_url) {
        const link = el("a", "shot");
        Object.assign(link, { href: f.attempt_url || f.screenshot_url, title: `The page as attempt ${f.attempt_number} left it` });
        const img = el("img");
        Object.assign(img, { src: f.screenshot_url, alt: `Screenshot of ${f.po_number}`, loading: "lazy" });
        link.append(img);
        item.append(link);
      } else item.append(el("div", "noshot", "no screenshot"));
      const text = el("div", "text");
      const title = el("b");
      if (f.url) {
        const link = el("a", "", f.po_number);
        link.href = f.url;
        title.append(link);
      } else title.textContent = f.po_number;
      const plural = f.attempts === 1 ? "" : "s";
      const message = el("div", expanded.has(f.po_id) ? "msg open" : "msg", f.message);
      message.title = f.message || "";
      text.append(title, " ", el("span", "badge", f.status),
        el("div", "muted", `${f.reason} · ${f.attempts} attempt${plural} · ${clock(f.at)}`), message);
      if (f.attempt_url) {
        const attempt = el("a", "attempt", `attempt ${f.attempt_number}: screenshot, page, steps`);
        attempt.href = f.attempt_url;
        text.append(attempt);
      }
      item.append(text);
      box.append(item);
    }
  }

  function renderSessions() {
    // Site sessions (poolsite.sessions): the list, and the hint after a login wall.
    const box = $("site-sessions");
    if (!box || !Array.isArray(state.sessions)) return;
    const hint = box.querySelector(".login-required");
    if (hint) hint.hidden = !/LOGIN_REQUIRED/.test(headline().reason || "");
    const list = box.querySelector("ul");
    list.replaceChildren();
    if (!state.sessions.length) list.append(el("li", "empty", "No site needs a session."));
    for (const row of state.sessions) {
      const item = el("li", `session-${row.state}`);
      item.append(el("b", "", row.site), ": ");
      if (row.checked) {
        // The last probe's answer first, and when it was asked (mirrors the template).
        const when = el("time", "", row.checked);
        when.dateTime = row.checked_iso;
        item.append(el("span", "verdict", row.verdict), " (checked ", when,
          `${row.answer ? `: ${row.answer}` : ""})${row.details ? ` · ${row.details}` : ""}`);
      } else item.append(row.summary);
      list.append(item);
    }
  }

  // ---- chart (Chart.js, vendored) ---------------------------------------------------
  function advanceChart() {
    const minute = Math.floor(Date.now() / 60000) * 60;
    const points = state.chart;
    let last = points.length ? points[points.length - 1].t : minute - 60;
    while (last < minute) {
      last += 60;
      points.push({ t: last, ok: 0, failed: 0 });
    }
    points.splice(0, Math.max(0, points.length - CHART_POINTS));
    return points[points.length - 1];
  }

  function renderChart() {
    if (!window.Chart) return;
    // The chart spans the run: it grows by a bar a minute only while the run is live.
    if (state.chart_live) advanceChart();
    const labels = state.chart.map((p) => clock(p.t).slice(0, 5));
    const ok = state.chart.map((p) => p.ok);
    const failed = state.chart.map((p) => p.failed);
    if (!chart) {
      chart = new window.Chart($("throughput-chart"), {
        type: "bar",
        data: {
          labels,
          datasets: [
            { label: "succeeded", data: ok, backgroundColor: "#2f9e62", stack: "po" },
            { label: "failed", data: failed, backgroundColor: "#d2463c", stack: "po" },
          ],
        },
        options: {
          animation: false,
          maintainAspectRatio: false,
          scales: { x: { stacked: true, ticks: { maxTicksLimit: 8 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
          plugins: { legend: { position: "bottom" } },
        },
      });
      return;
    }
    chart.data.labels = labels;
    chart.data.datasets[0].data = ok;
    chart.data.datasets[1].data = failed;
    chart.update("none");
  }

  let chartDue = false;
  function scheduleChart() {
    if (chartDue) return;
    chartDue = true;
    // Bars are per minute: redrawing every 15 s is plenty, and a Chart.js redraw costs
    // more than all the other DOM updates of a second together. Redraw when the page is
    // idle, so it does not hold up the next live update (bench_dashboard: with 20 pages
    // open, a redraw every 5 s added ~40-100 ms to the p95 event → DOM latency).
    const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 0));
    setTimeout(() => idle(() => { chartDue = false; renderChart(); }, { timeout: 2000 }), CHART_REDRAW_MS);
  }

  // ---- applying messages ------------------------------------------------------------
  function renderAll() {
    renderHeadline();
    renderBatchOptions();
    renderControls();
    renderProgress();
    renderWorkers();
    renderEvents();
    renderFailures();
    renderSessions();
    renderChart();
  }

  function askRefresh() {
    // Something we cannot draw from a delta (a new host, another batch, a plan change):
    // ask for a snapshot. Also the cure for updates the channel layer dropped.
    if (!ws || ws.readyState !== WebSocket.OPEN || Date.now() - refreshAsked < 2000) return;
    refreshAsked = Date.now();
    ws.send(JSON.stringify({ kind: "refresh" }));
  }

  let followUps = 0;
  function followUpLeavingWorkers() {
    // A stopping or dead worker leaves the host's row at its next heartbeat; look again
    // a little later (a few times at most) so its card goes without a reload.
    const leaving = Object.values(state.workers).some((c) => c.state === "stopping" || c.state === "dead");
    if (!leaving || followUps >= 5) {
      if (!leaving) followUps = 0;
      return;
    }
    followUps += 1;
    setTimeout(askRefresh, 3000);
  }

  function mergePool(pool) {
    if (pool.host) {
      let host = state.hosts.find((h) => h.host === pool.host);
      if (!host) {
        host = { host: pool.host, state: "STARTING", reason: "" };
        state.hosts.push(host);
        state.hosts.sort((a, b) => (a.host < b.host ? -1 : 1));
        askRefresh();
      }
      for (const name of ["state", "reason", "batch_id", "pool_size", "throughput_per_min"]) {
        if (name in pool) host[name] = pool[name];
      }
    }
    // A host's heartbeat can be older than the snapshot a button press just sent: with a
    // plan_version we can tell, and keep the newer plan.
    const stale = typeof pool.plan_version === "number" && pool.plan_version < state.plan.version;
    if (pool.plan_state && pool.plan_state !== state.plan.state && !stale) {
      if (typeof pool.plan_version === "number") state.plan.version = pool.plan_version;
      state.plan.state = pool.plan_state;
      state.allowed = state.allowed_by_state[pool.plan_state] || [];
      askRefresh(); // the batch list (queued, failed) and plan reason move with it
    }
    if ("batch_id" in pool && pool.batch_id && (!state.batch || state.batch.id !== pool.batch_id)) {
      askRefresh();
    }
    const batch = state.batch;
    if (batch && (!pool.batch_id || pool.batch_id === batch.id)) {
      if (pool.counts) {
        const before = { ok: batch.completed, failed: batch.failed };
        recount(batch, pool.counts, pool.total);
        state.chart_live = true; // POs are finishing now
        const point = advanceChart();
        point.ok += Math.max(0, batch.completed - before.ok);
        point.failed += Math.max(0, batch.failed - before.failed);
        scheduleChart();
      }
      const rates = state.hosts.filter((h) => h.batch_id === batch.id && typeof h.throughput_per_min === "number");
      if (rates.length > 1) {
        batch.throughput_per_min = rates.reduce((a, h) => a + h.throughput_per_min, 0);
        batch.eta_seconds = batch.throughput_per_min > 0 ? Math.round((batch.pending * 60) / batch.throughput_per_min) : null;
      } else {
        if ("throughput_per_min" in pool) batch.throughput_per_min = pool.throughput_per_min;
        if ("eta_seconds" in pool) batch.eta_seconds = pool.eta_seconds;
        else if (pool.counts) {
          const rate = batch.throughput_per_min;
          batch.eta_seconds = rate > 0 && batch.pending ? Math.round((batch.pending * 60) / rate) : null;
        }
      }
    }
  }

  function applyUpdate(message) {
    let newCard = false;
    for (const [key, fields] of Object.entries(message.workers || {})) {
      if (fields.removed) {
        delete state.workers[key];
        newCard = true;
        continue;
      }
      const slash = key.indexOf("/");
      const card = state.workers[key] || { host: key.slice(0, slash), worker_id: key.slice(slash + 1) };
      if (!state.workers[key]) newCard = true;
      const wasLeaving = card.state === "stopping" || card.state === "dead";
      state.workers[key] = Object.assign(card, fields);
      if (!newCard) updateCard(key);
      if (!wasLeaving && (card.state === "stopping" || card.state === "dead")) {
        followUps = 0;
        setTimeout(askRefresh, 3000);
      }
    }
    if (newCard) renderWorkers();
    if (state.batch && Object.keys(message.workers || {}).length) {
      const active = countActive();
      if (active !== state.batch.active) {
        state.batch.active = active;
        renderProgress(); // the counter, and RUNNING vs queued on host
      }
    }
    const pool = message.pool || {};
    if (Object.keys(pool).length) {
      // Redraw only what changed: most updates only move a worker card.
      const before = [JSON.stringify([state.hosts, state.plan.state]), JSON.stringify(state.batch)];
      mergePool(pool);
      if (JSON.stringify([state.hosts, state.plan.state]) !== before[0]) {
        renderHeadline();
        renderControls();
        renderSessions();
      }
      if (JSON.stringify(state.batch) !== before[1]) renderProgress();
    }
    if (message.events && message.events.length) {
      state.events = message.events.slice().reverse().concat(state.events).slice(0, MAX_EVENTS);
      renderEvents();
    }
    window.poolDashboard.updates += 1;
    root.dataset.updatesApplied = window.poolDashboard.updates;
    // A top-level sent_at (the oldest change in the update) wins over the pool's.
    const sentAt = typeof message.sent_at === "number" ? message.sent_at : pool.sent_at;
    if (typeof sentAt === "number") {
      const latency = Date.now() - sentAt;
      if (latencies.length < MAX_LATENCIES) latencies.push(latency);
      root.dataset.lastLatencyMs = latency;
    }
  }

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      console.warn("dashboard: unreadable message", error);
      return;
    }
    if (message.kind === "snapshot") {
      state = message;
      attempt = 0;
      setConnection("live");
      window.poolDashboard.snapshots += 1;
      root.dataset.snapshots = window.poolDashboard.snapshots;
      renderAll();
      followUpLeavingWorkers();
    } else if (message.kind === "update") applyUpdate(message);
    else if (message.kind === "control_result") onControlResult(message);
  }

  // ---- connection, with backoff -----------------------------------------------------
  function setConnection(mode, delayMs) {
    const conn = $("conn");
    conn.className = `conn ${mode}`;
    root.dataset.connection = mode;
    const text = {
      connecting: "connecting…",
      live: "live",
      reconnecting: `reconnecting… (next try in ${Math.ceil((delayMs || 0) / 1000)} s)`,
      signedout: "signed out — reload to sign in again",
    }[mode];
    conn.textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    setConnection(attempt ? "reconnecting" : "connecting", 0);
    ws = new WebSocket(scheme + location.host + root.dataset.wsPath);
    ws.onmessage = onMessage;
    ws.onclose = () => {
      ws = null;
      if (inFlight !== null) onControlResult({ ok: false, message: "Connection lost before an answer; check the state below." });
      const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      const delay = Math.round(base * (0.75 + Math.random() * 0.5));
      attempt += 1;
      setConnection("reconnecting", delay);
      if (attempt === 3) checkSignedIn();
      setTimeout(connect, delay);
    };
  }

  function checkSignedIn() {
    // A refused handshake looks like any other drop; ask the page itself.
    fetch(location.pathname, { redirect: "manual", cache: "no-store", credentials: "same-origin" })
      .then((response) => {
        if (response.type === "opaqueredirect" || response.status === 403) setConnection("signedout");
      })
      .catch(() => {});
  }

  // ---- start ------------------------------------------------------------------------
  const controls = $("controls");
  if (controls) {
    controls.addEventListener("submit", onSubmit);
    const select = $("batch-select");
    if (select) select.addEventListener("change", renderControls);
    const size = $("scale-size");
    if (size) size.addEventListener("input", () => { size.dataset.dirty = "1"; });
  }
  setInterval(tickElapsed, 1000);
  setInterval(askRefresh, RESYNC_MS);
  window.addEventListener("load", renderChart);
  $("failures").addEventListener("click", toggleMessage);
  renderControls();
  connect();
})();
