// dsa110d console: keeps the server-rendered pages fresh by polling the read-only API.
// Every value from the pipeline is written with textContent (never innerHTML), so a file
// name, a reason or a source id is shown as text, whatever it holds.
"use strict";

(function () {
  const REFRESH_MS = Number(document.body.dataset.refreshMs) || 5000;
  const tables = new Map(); // id -> {el, columns, rows, sortKey, sortDir, filter}
  const charts = new Map(); // id -> uPlot instance
  const PALETTE = {
    all: "#9aa5b1", transient: "#d64545", variable: "#2f6fdf", collecting: "#9aa5b1",
    complete: "#6c8ebf", queued: "#b58900", converting: "#cb7a00", converted: "#2e8b57",
    failed: "#d64545", incomplete: "#8e44ad", pending: "#b58900", processed: "#2e8b57",
  };

  // ------------------------------------------------------------------ formatting
  function pad(n) { return String(n).padStart(2, "0"); }
  function utc(seconds) {
    const d = new Date(seconds * 1000);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  }
  function duration(s) {
    s = Math.max(0, s);
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  function format(value, kind) {
    if (value === null || value === undefined || value === "") return "-";
    if (kind === "num" && typeof value === "number") {
      if (!Number.isFinite(value)) return "-";
      if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
      return Number(value.toPrecision(3)).toString();
    }
    if (kind === "int" && typeof value === "number") return String(Math.trunc(value));
    if (kind === "time" && typeof value === "number") return value > 0 ? utc(value) : "-";
    if (kind === "age" && typeof value === "number") return duration(value);
    if (kind === "count" && Array.isArray(value)) return String(value.length);
    if (kind === "list" && Array.isArray(value)) return value.length ? value.join(", ") : "-";
    if (kind === "json" && typeof value === "object") {
      const parts = Object.entries(value).map(([k, v]) => `${k}: ${v}`);
      return parts.length ? parts.join(", ") : "-";
    }
    if (kind === "qa" && typeof value === "object") {
      const parts = Object.entries(value)
        .filter(([, summary]) => summary && typeof summary === "object" && Object.keys(summary).length)
        .map(([stage, summary]) => `${stage}: ` +
          Object.entries(summary).map(([k, v]) => `${k} ${format(v, "num")}`).join(", "));
      return parts.length ? parts.join("; ") : "-";
    }
    return String(value);
  }
  function link(template, row) {
    return template.replace(/\{(\w+)\}/g, (_, key) =>
      String(row[key] ?? "").split("/").map(encodeURIComponent).join("/"));
  }
  function dig(data, path) {
    if (!path) return data;
    return path.split(".").reduce((v, k) => (v == null ? v : v[k]), data);
  }

  // ------------------------------------------------------------------ fetching
  const pending = new Map();
  function getJSON(url) {
    if (!pending.has(url)) {
      pending.set(url, fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(async (r) => {
          const body = await r.json().catch(() => ({}));
          if (!r.ok) throw new Error(body.error || `${url}: HTTP ${r.status}`);
          return body;
        })
        .finally(() => pending.delete(url)));
    }
    return pending.get(url);
  }
  function showError(message) {
    const el = document.getElementById("error");
    if (!el) return;
    el.textContent = message || "";
    el.hidden = !message;
  }

  // ------------------------------------------------------------------ tables
  function setupTable(el) {
    const columns = Array.from(el.tHead.rows[0].cells).map((th) => ({
      key: th.dataset.key, fmt: th.dataset.fmt || "text", link: th.dataset.link || "", th,
    }));
    const state = { el, columns, rows: null, sortKey: null, sortDir: 1, filter: "" };
    tables.set(el.id, state);
    for (const col of columns) {
      const sort = () => {
        state.sortDir = state.sortKey === col.key ? -state.sortDir : 1;
        state.sortKey = col.key;
        renderTable(state);
      };
      col.th.addEventListener("click", sort);
      col.th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
    }
    return state;
  }
  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }
  function renderTable(state) {
    if (state.rows === null) return;
    const filterKey = state.el.dataset.filterKey;
    let rows = state.rows.filter((r) => !state.filter || !filterKey || r[filterKey] === state.filter);
    if (state.sortKey) {
      const key = state.sortKey;
      rows = rows.slice().sort((a, b) => state.sortDir * compare(a[key], b[key]));
    }
    const body = document.createElement("tbody");
    for (const row of rows) {
      const tr = body.insertRow();
      if (filterKey) tr.dataset[filterKey] = String(row[filterKey] ?? "");
      for (const col of state.columns) {
        const td = tr.insertCell();
        const text = format(row[col.key], col.fmt);
        if (col.link) {
          const a = document.createElement("a");
          a.href = link(col.link, row);
          a.textContent = text;
          td.appendChild(a);
        } else {
          td.textContent = text;
        }
      }
      if (state.onRow) {
        tr.classList.add("clickable");
        tr.addEventListener("click", () => state.onRow(row));
      }
    }
    state.el.replaceChild(body, state.el.tBodies[0]);
    for (const col of state.columns) {
      col.th.classList.toggle("sorted-asc", state.sortKey === col.key && state.sortDir > 0);
      col.th.classList.toggle("sorted-desc", state.sortKey === col.key && state.sortDir < 0);
    }
    const empty = document.querySelector(`[data-empty-for="${state.el.id}"]`);
    if (empty) empty.hidden = rows.length > 0;
  }
  async function refreshTable(state) {
    const data = await getJSON(state.el.dataset.api);
    const rows = dig(data, state.el.dataset.rows);
    state.rows = Array.isArray(rows) ? rows : [];
    renderTable(state);
  }

  // ------------------------------------------------------------------ figures
  async function refreshFields(container) {
    const data = await getJSON(container.dataset.api);
    for (const el of container.querySelectorAll("[data-field]")) {
      const value = dig(data, el.dataset.field);
      el.textContent = el.dataset.fmt ? format(value, el.dataset.fmt) : (value ?? "-");
      if (el.classList.contains("health")) el.dataset.health = String(value);
    }
  }

  // ------------------------------------------------------------------ charts
  function chartSize(el) {
    return { width: Math.max(300, el.clientWidth || 600), height: el.classList.contains("wide") ? 360 : 260 };
  }
  function pointsOnly(label, stroke) {
    return { label, stroke, fill: stroke, paths: () => null, points: { show: true, size: 6, fill: stroke } };
  }
  const UTC_DATES = { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC") };
  const FROM_ZERO = (u, min, max) => [0, Math.max(1, max * 1.1)];

  function draw(el, options, data) {
    const old = charts.get(el.id);
    if (old && old.series.length === options.series.length) {
      old.setData(data);
      return old;
    }
    if (old) old.destroy();
    el.textContent = "";
    const plot = new uPlot({ ...chartSize(el), ...options }, data, el);
    charts.set(el.id, plot);
    el.dataset.rendered = String(data[0].length);
    return plot;
  }
  function byState(rows, timeKey, yKey, stateKey) {
    rows = rows.filter((r) => typeof r[timeKey] === "number").sort((a, b) => a[timeKey] - b[timeKey]);
    const states = Array.from(new Set(rows.map((r) => r[stateKey]))).sort();
    const xs = rows.map((r) => r[timeKey]);
    const ys = states.map((s) => rows.map((r) => (r[stateKey] === s ? r[yKey] : null)));
    return { states, data: [xs, ...ys] };
  }
  function setTime(setId) {
    const t = Date.parse(`${setId}Z`);
    return Number.isNaN(t) ? null : t / 1000;
  }
  const CHARTS = {
    "sets-per-hour": async (el) => {
      const data = await getJSON(el.dataset.api);
      const rows = data.sets_per_hour || [];
      draw(el, {
        ...UTC_DATES,
        scales: { x: { time: true }, y: { range: FROM_ZERO } },
        axes: [{}, { label: "sets per hour (UTC)" }],
        series: [{}, { label: "sets", stroke: "#2f6fdf", fill: "rgba(47,111,223,0.3)",
          paths: uPlot.paths.bars({ size: [0.8, 40] }) }],
      }, [rows.map((r) => r.hour), rows.map((r) => r.sets)]);
    },
    "sets-timeline": async (el) => {
      const rows = (await getJSON(el.dataset.api)).map((r) => ({ ...r, t: setTime(r.set_id) }));
      const { states, data } = byState(rows, "t", "subbands", "state");
      draw(el, {
        ...UTC_DATES,
        scales: { x: { time: true }, y: { range: FROM_ZERO } },
        axes: [{}, { label: "subbands" }],
        series: [{}, ...states.map((s) => pointsOnly(s, PALETTE[s] || "#555"))],
      }, data);
    },
    "blocks-timeline": async (el) => {
      const rows = await getJSON(el.dataset.api);
      const { states, data } = byState(rows, "start", "chunks", "state");
      draw(el, {
        ...UTC_DATES,
        scales: { x: { time: true }, y: { range: FROM_ZERO } },
        axes: [{}, { label: "chunks" }],
        series: [{}, ...states.map((s) => pointsOnly(s, PALETTE[s] || "#555"))],
      }, data);
    },
    "eta-v": async (el) => {
      const d = await getJSON(el.dataset.api);
      const idx = d.source_id.map((_, i) => i).filter((i) => d.eta[i] > 0 && d.v[i] > 0);
      idx.sort((a, b) => d.eta[a] - d.eta[b]);
      const classes = ["transient", "variable"];
      const ys = [idx.map((i) => (classes.includes(d.class && d.class[i]) ? null : d.v[i]))]
        .concat(classes.map((c) => idx.map((i) => (d.class && d.class[i] === c ? d.v[i] : null))));
      draw(el, {
        mode: 1,
        scales: { x: { time: false, distr: 3 }, y: { distr: 3 } },
        axes: [{ label: "eta (reduced chi-square)" }, { label: "V (modulation index)" }],
        legend: { live: true },
        series: [{ label: "eta" }, pointsOnly("other sources", PALETTE.all),
          pointsOnly("transient", PALETTE.transient), pointsOnly("variable", PALETTE.variable)],
      }, [idx.map((i) => d.eta[i]), ...ys]);
      el.dataset.sources = String(idx.length);
    },
    "light-curve": async (el) => {
      const source = el.dataset.source;
      if (!source) return;
      const d = await getJSON(`/api/v1/sources/${encodeURIComponent(source)}/light-curve`);
      const errs = d.flux_err_jy;
      const errorBars = (u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#2f6fdf";
        ctx.lineWidth = 1;
        ctx.beginPath();
        u.data[0].forEach((x, i) => {
          const e = errs[i];
          if (e === null || e === undefined) return;
          const px = u.valToPos(x, "x", true);
          ctx.moveTo(px, u.valToPos(u.data[1][i] - e, "y", true));
          ctx.lineTo(px, u.valToPos(u.data[1][i] + e, "y", true));
        });
        ctx.stroke();
        ctx.restore();
      };
      draw(el, {
        scales: { x: { time: false } },
        axes: [{ label: "MJD" }, { label: "flux density (Jy)" }],
        series: [{ label: "MJD" }, { label: `${d.source_id} flux (Jy)`, stroke: "#2f6fdf",
          width: 1, points: { show: true, size: 6 } }],
        hooks: { draw: [errorBars] },
      }, [d.mjd, d.flux_jy]);
      el.dataset.points = String(d.mjd.length);
    },
  };

  // ------------------------------------------------------------------ the page
  // What changes only with an analysis run (the candidates, the eta-V diagram, the files)
  // is marked data-slow and refreshed every SLOW_EVERY ticks: a page left open costs the
  // daemon little.
  const SLOW_EVERY = 12;
  let tick = 0;
  const due = (el) => tick % SLOW_EVERY === 0 || el.dataset.slow === undefined;

  async function refresh() {
    const jobs = [];
    for (const state of tables.values()) if (due(state.el)) jobs.push(refreshTable(state));
    for (const el of document.querySelectorAll("[data-api]:not(table):not(.chart)")) {
      if (due(el)) jobs.push(refreshFields(el));
    }
    for (const el of document.querySelectorAll(".chart[data-chart]")) {
      const make = CHARTS[el.dataset.chart];
      if (make && (el.dataset.api || el.dataset.source) && due(el)) jobs.push(make(el));
    }
    tick += 1;
    const outcomes = await Promise.allSettled(jobs);
    const failed = outcomes.find((o) => o.status === "rejected");
    showError(failed ? failed.reason.message : "");
    const stamp = document.getElementById("refreshed");
    if (stamp) {
      stamp.textContent = `updated ${utc(Date.now() / 1000)} UTC`;
      stamp.dataset.refreshes = String(Number(stamp.dataset.refreshes || 0) + 1);
    }
  }

  function showLightCurve(row) {
    const el = document.getElementById("light-curve");
    if (!el) return;
    el.dataset.source = String(row.source_id);
    const title = document.getElementById("lc-title");
    if (title) title.textContent = String(row.source_id);
    CHARTS["light-curve"](el).catch((e) => showError(e.message));
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const el of document.querySelectorAll("table.data[data-api]")) setupTable(el);
    const cands = tables.get("candidates");
    if (cands) cands.onRow = showLightCurve;
    for (const select of document.querySelectorAll("select[data-filter-for]")) {
      select.addEventListener("change", () => {
        const state = tables.get(select.dataset.filterFor);
        if (!state) return;
        state.filter = select.value;
        renderTable(state);
      });
    }
    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  });
})();
