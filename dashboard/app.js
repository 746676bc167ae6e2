/* CMK rollout dashboard: a fleet overview, a rollout view and an account view over the app's public HTTP API.
   No build step, no dependencies. Views update their DOM in place on each refresh (at most every 5 s), so
   filters, scroll position, focus and open rows survive a refresh. */
"use strict";

(() => {
  const API = document.body.dataset.apiBase || "/api";
  const KEY_STORAGE = "cmk.functionKey";
  const TOKEN_STORAGE = "cmk.accessToken";
  // Every 5 s, or faster with ?refresh=N (1 to 5 seconds), kept for the tab.
  const REFRESH_MS = (() => {
    const asked = Number(new URLSearchParams(location.search).get("refresh") || sessionStorage.getItem("cmk.refresh"));
    if (asked >= 1 && asked <= 5) { sessionStorage.setItem("cmk.refresh", String(asked)); return asked * 1000; }
    return 5000;
  })();
  const PAGE_SIZES = [25, 50, 100, 200];

  const PHASES = ["queued", "starting", "preflight", "waitingForAccount", "identity", "keyAccess",
    "awaitingApproval", "waitingForSlot", "enabling", "encrypting", "verifying", "done"];
  const PHASE_LABEL = {
    queued: "Queued (cap)", starting: "Starting", preflight: "Preflight", waitingForAccount: "Waiting for account",
    identity: "Identity", keyAccess: "Key access", awaitingApproval: "Awaiting approval",
    waitingForSlot: "Prepared, waiting for a slot", enabling: "Enabling",
    encrypting: "Encrypting", verifying: "Verifying", done: "Done",
  };
  const OUTCOMES = ["Enabled", "AlreadyEnabled", "Encrypting", "Failed", "Refused", "Planned", "Terminated"];
  const OUTCOME_LABEL = {
    Enabled: "Enabled", AlreadyEnabled: "Already enabled", Encrypting: "Encrypting (not followed)",
    Failed: "Failed", Refused: "Refused", Planned: "Planned (dry run)", Terminated: "Terminated",
  };
  const OUTCOME_SYMBOL = {
    Enabled: "✓", AlreadyEnabled: "=", Encrypting: "…", Failed: "✕", Refused: "⊘", Planned: "◇", Terminated: "■",
  };
  // Okabe-Ito colours, with a pattern on the phases that need telling apart without colour.
  const PHASE_FILL = {
    queued: ["#d8dde3", "hatch", "#8c959f"], starting: ["#aab3bd"], preflight: ["#56b4e9"],
    waitingForAccount: ["#56b4e9", "dots", "#1b1f24"], identity: ["#0072b2"], keyAccess: ["#cc79a7"],
    awaitingApproval: ["#f0e442", "backhatch", "#1b1f24"], waitingForSlot: ["#cc79a7", "dots", "#1b1f24"],
    enabling: ["#d55e00"],
    encrypting: ["#e69f00", "stripes", "rgba(0,0,0,0.3)"], verifying: ["#7fd1b9"], done: ["#009e73"],
  };
  const STEPS = ["preflight", "identity", "keyAccess", "awaitingApproval", "waitingForSlot", "enabling", "encrypting",
    "verifying"];

  const main = document.getElementById("main");
  const liveState = document.getElementById("live-state");
  const banner = document.getElementById("banner");
  // What a screen reader hears: changes that matter (sign-in, a decision sent), not every refresh's time.
  const announcer = document.getElementById("announce");
  function announce(text) { setText(announcer, text); }
  const authBox = document.getElementById("auth");
  // Timings of the page, for the benchmarks and the tests: the first view (from the navigation), the last refresh,
  // and the last refresh's requests and rendering apart.
  const metrics = { firstViewMs: null, lastRefreshMs: null, refreshes: 0, lastFetchMs: null, lastRenderMs: null };
  window.__cmkDashboard = metrics;

  // --- DOM helpers -------------------------------------------------------------------------------------------

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") el.className = value;
      else if (name === "text") el.textContent = value;
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  function replace(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }
  /* Rebuild an element's content only when what it shows changed, so a focused link in it keeps its focus. */
  function fill(el, signature, build) {
    const key = typeof signature === "string" ? signature : JSON.stringify(signature);
    if (el.sig_ === key) return;
    el.sig_ = key;
    replace(el, build());
  }
  function setText(el, value) {
    const text = value === null || value === undefined ? "" : String(value);
    if (el.textContent !== text) el.textContent = text;
  }

  // --- formatting --------------------------------------------------------------------------------------------

  const timeFormat = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  function fmtTime(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : timeFormat.format(date);
  }
  function fmtDur(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return `${hrs}h ${String(m % 60).padStart(2, "0")}m`;
    return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
  }
  function between(start, end) {
    if (!start || !end) return null;
    return (new Date(end) - new Date(start)) / 1000;
  }
  /* Codes like CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY may wrap after their underscores. */
  function breakable(code) {
    return String(code || "").replace(/_/g, "_\u200b");
  }
  function fmtRange(start, end) {
    if (!end) return `${fmtTime(start)} → now`;
    const a = new Date(start);
    const b = new Date(end);
    const sameDay = a.toDateString() === b.toDateString();
    return `${fmtTime(start)} → ${sameDay ? b.toLocaleTimeString() : fmtTime(end)}`;
  }
  function shortId(id) {
    return id && id.length > 28 ? `${id.slice(0, 14)}…${id.slice(-10)}` : id || "";
  }
  function phaseTag(phase) {
    return h("span", { class: "phase-label" }, h("span", { class: `sw ph-${phase}`, "aria-hidden": "true" }),
      PHASE_LABEL[phase] || phase || "—");
  }
  function outcomeTag(outcome) {
    if (!outcome) return h("span", { class: "badge oc-none" }, "in progress");
    return h("span", { class: `badge oc-${outcome}` }, h("span", { "aria-hidden": "true" }, OUTCOME_SYMBOL[outcome] || "•"),
      OUTCOME_LABEL[outcome] || outcome);
  }
  function link(params, label, extra) {
    const href = `?${new URLSearchParams(params)}`;
    return h("a", { href, onclick: (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      navigate(params);
    }, ...(extra || {}) }, label);
  }

  // --- the API -----------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function functionKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }
  function accessToken() {
    try { return sessionStorage.getItem(TOKEN_STORAGE) || ""; } catch { return ""; }
  }

  /* Every call sends what the admin gave: a function key (x-functions-key) and/or an Entra ID access token
     (Authorization: Bearer); with neither, the browser's own credentials (the App Service Authentication session
     cookie of an Entra ID sign-in). */
  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    const key = functionKey();
    if (key) headers["x-functions-key"] = key;
    const token = accessToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let body;
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await fetch(API + path, {
        method: options.method || "GET", headers, body, credentials: "same-origin", cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, "NetworkError", `the app did not answer (${error.message})`);
    }
    if (options.raw && response.ok) return response;
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.code || `HTTP${response.status}`,
        error.message || `HTTP ${response.status} ${response.statusText}`);
    }
    return data;
  }

  // --- refresh loop, staleness, sign-in ----------------------------------------------------------------------

  const loop = { view: null, timer: null, paused: false, running: false, lastOk: null, blocked: false, queued: false };

  async function refresh() {
    clearTimeout(loop.timer);
    if (!loop.view) return;
    if (loop.running) { loop.queued = true; return; }
    loop.running = true;
    const view = loop.view;
    const started = performance.now();
    try {
      await view.refresh();
      if (view !== loop.view) return;
      loop.lastOk = new Date();
      view.loaded = true;
      loop.blocked = false;
      authBox.hidden = true;
      banner.hidden = true;
      main.classList.remove("stale");
      metrics.refreshes += 1;
      metrics.lastRefreshMs = Math.round(performance.now() - started);
      if (metrics.firstViewMs === null) metrics.firstViewMs = Math.round(performance.now());
      document.body.dataset.ready = "1";
      document.body.dataset.refreshes = String(metrics.refreshes);
      showLive();
    } catch (error) {
      if (view === loop.view) showFailure(error);
    } finally {
      loop.running = false;
      if (view === loop.view) schedule(started);
    }
  }

  function schedule(started) {
    clearTimeout(loop.timer);
    if (loop.queued) { loop.queued = false; loop.timer = setTimeout(refresh, 0); return; }
    if (loop.paused || loop.blocked || document.hidden) return;
    loop.timer = setTimeout(refresh, Math.max(0, REFRESH_MS - (performance.now() - started)));
  }

  function showLive() {
    liveState.className = loop.paused ? "live-state paused" : "live-state ok";
    setText(liveState, `${loop.paused ? "Paused" : "Live"} · updated ${new Date().toLocaleTimeString()}`);
  }

  function showFailure(error) {
    const status = error instanceof ApiError ? error.status : 0;
    main.classList.add("stale");
    liveState.className = "live-state stale";
    if (status === 401 || status === 403) {
      loop.blocked = true;
      authBox.hidden = false;
      const hadKey = Boolean(functionKey() || accessToken());
      const message = status === 401
        ? (hadKey
          ? "Sign-in needed: the API answered 401 Unauthorized to the function key or token you entered. Enter a " +
            "valid one."
          : "Sign-in needed: the API answered 401 Unauthorized. Enter a function key, or sign in.")
        : "Forbidden: the API answered 403 to your credentials. Your account or key is not allowed to read this; " +
          "ask for access, or use another key.";
      setText(document.getElementById("auth-message"), message);
      announce(message);
      setText(liveState, status === 401 ? "Sign-in needed (401)" : "Forbidden (403)");
      banner.hidden = true;
      if (!main.querySelector(".data")) replace(main, h("p", { class: "empty" }, message));
      document.body.dataset.auth = String(status);
      if (status === 401) document.getElementById("key-input").focus();
      return;
    }
    const what = error instanceof ApiError && error.status === 404
      ? `Not found: ${error.message}`
      : `The last refresh failed: ${error.message || error}.`;
    const retry = loop.paused ? "" : ` Retrying every ${REFRESH_MS / 1000} s.`;
    if (loop.view && loop.view.loaded) {
      replace(banner, h("strong", {}, "Stale data. "), `Showing the data from ${loop.lastOk.toLocaleTimeString()}; `,
        what, retry);
      banner.hidden = false;
      setText(liveState, `Stale · last refresh failed ${new Date().toLocaleTimeString()}`);
    } else {
      // Nothing shown yet: say what the API answered instead of an empty page.
      replace(main, h("div", { class: "empty", role: "alert" }, h("strong", {}, what), retry));
      banner.hidden = true;
      setText(liveState, `No data · ${new Date().toLocaleTimeString()}`);
    }
  }

  document.getElementById("pause").addEventListener("click", (event) => {
    loop.paused = !loop.paused;
    event.currentTarget.setAttribute("aria-pressed", String(loop.paused));
    setText(event.currentTarget, loop.paused ? "Resume updates" : "Pause updates");
    if (loop.paused) { clearTimeout(loop.timer); showLive(); } else refresh();
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });

  document.getElementById("key-button").addEventListener("click", () => {
    authBox.hidden = !authBox.hidden;
    setText(document.getElementById("auth-message"), functionKey() || accessToken()
      ? "A function key or token is set for this tab. Enter another one, or forget them to use your sign-in."
      : "No function key or token is set: the API is called with your browser's sign-in, if any.");
    if (!authBox.hidden) document.getElementById("key-input").focus();
  });
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key-input");
    try { sessionStorage.setItem(KEY_STORAGE, input.value.trim()); } catch { /* storage off: no key kept */ }
    input.value = "";
    delete document.body.dataset.auth;
    authBox.hidden = true;
    loop.blocked = false;
    refresh();
  });
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token-input");
    try { sessionStorage.setItem(TOKEN_STORAGE, input.value.trim().replace(/^Bearer\s+/i, "")); } catch { /* off */ }
    input.value = "";
    delete document.body.dataset.auth;
    authBox.hidden = true;
    loop.blocked = false;
    refresh();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    try { sessionStorage.removeItem(KEY_STORAGE); sessionStorage.removeItem(TOKEN_STORAGE); } catch { /* none */ }
    loop.blocked = false;
    refresh();
  });
  document.getElementById("entra-link").href =
    `/.auth/login/aad?post_login_redirect_uri=${encodeURIComponent(location.pathname + location.search)}`;

  // --- routing -----------------------------------------------------------------------------------------------

  function navigate(params) {
    history.pushState(null, "", `?${new URLSearchParams(params)}`);
    route();
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  window.addEventListener("popstate", route);

  function route() {
    const params = new URLSearchParams(location.search);
    let view;
    if (params.get("instance")) view = new AccountView(params.get("instance"), params.get("from"));
    else if (params.get("rollout")) view = new RolloutView(params.get("rollout"), params);
    else view = new OverviewView();
    loop.view = view;
    main.classList.remove("stale");
    replace(main, h("p", { class: "loading" }, "Loading…"));
    view.mount();
    refresh();
  }

  function crumbs(items) {
    const list = h("ol", {});
    items.forEach(([label, params], index) => {
      const last = index === items.length - 1;
      list.append(h("li", {}, last ? h("span", { "aria-current": "page" }, label) : link(params, label)));
    });
    replace(document.getElementById("crumbs"), list);
  }

  // --- shared pieces -----------------------------------------------------------------------------------------

  function card(label, value, sub, extra) {
    const valueEl = h("span", { class: "value" }, value);
    const subEl = h("span", { class: "sub" }, sub || "");
    const el = h("div", { class: `card ${extra || ""}` }, h("span", { class: "label" }, label), valueEl, subEl);
    el.update = (v, s, cls) => { setText(valueEl, v); setText(subEl, s || ""); el.className = `card ${cls || ""}`; };
    return el;
  }

  /* A stacked bar with a legend: colour, pattern and the count in words. */
  function stackedBar(label) {
    const bar = h("div", { class: "stack", role: "img" });
    const legend = h("ul", { class: "legend" });
    const box = h("div", {}, bar, legend);
    box.update = (counts, order, labels, swatchClass) => {
      const total = order.reduce((sum, key) => sum + (counts[key] || 0), 0);
      const parts = order.filter((key) => counts[key]);
      bar.setAttribute("aria-label",
        `${label}: ${parts.map((key) => `${labels[key] || key} ${counts[key]}`).join(", ") || "none"}`);
      replace(bar, parts.map((key) => {
        const span = h("span", { class: swatchClass(key), title: `${labels[key] || key}: ${counts[key]}` });
        span.style.width = `${(100 * counts[key]) / Math.max(1, total)}%`;
        return span;
      }));
      replace(legend, parts.length ? parts.map((key) => h("li", {},
        h("span", { class: `sw ${swatchClass(key)}`, "aria-hidden": "true" }), `${labels[key] || key}: `,
        h("strong", {}, String(counts[key])))) : h("li", {}, "none"));
    };
    return box;
  }

  function encryptionCell(encryption, phase) {
    if (!encryption || (encryption.elapsedSeconds === null && encryption.expectedSeconds === null)) return "—";
    if (encryption.elapsedSeconds === null && phase === "done") return "—";
    const { elapsedSeconds: elapsed, expectedSeconds: expected } = encryption;
    const text = elapsed === null ? `estimate ${fmtDur(expected)}`
      : expected ? `${fmtDur(elapsed)} of ~${fmtDur(expected)}` : fmtDur(elapsed);
    if (elapsed === null || !expected) return text;
    const ratio = elapsed / expected;
    const bar = h("span", { class: `progress${ratio > 1 ? " over" : ""}`, "aria-hidden": "true" }, h("span", {}));
    bar.firstChild.style.width = `${Math.min(100, ratio * 100)}%`;
    return h("span", {}, text, " ", bar, ratio > 1 ? h("span", { class: "cell-sub" }, "over the estimate") : null);
  }

  function findingCodes(account) {
    if (!account.findings || !account.findings.length) return "—";
    return h("span", { class: "codes" }, account.findings.map((f) =>
      h("span", { class: `badge sev-${f.severity || "warning"}`, title: f.message || f.code },
        f.severity === "blocking" ? "✕ " : f.severity === "warning" ? "⚠ " : "", breakable(f.code))));
  }

  async function download(path, filename) {
    const response = await api(path, { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const anchor = h("a", { href: url, download: filename });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // --- overview ----------------------------------------------------------------------------------------------

  class OverviewView {
    constructor() {
      this.tokens = [null];
      this.standaloneFilter = "";
      this.rolloutRows = new Map();
      this.accountRows = new Map();
    }

    mount() {
      crumbs([["Fleet overview", {}]]);
      document.title = "Fleet overview · CMK rollout";
      this.cards = {
        accounts: card("Accounts", "…", ""),
        running: card("Running now", "…", ""),
        approval: card("Awaiting approval", "…", ""),
        oldest: card("Oldest running encryption", "…", ""),
        rollouts: card("Rollouts", "…", ""),
      };
      this.outcomes = stackedBar("Accounts by outcome");
      this.phases = stackedBar("Running accounts by phase");
      this.rolloutBody = h("tbody", {});
      this.rolloutCaption = h("caption", {}, "Rollouts, newest first");
      this.accountBody = h("tbody", {});
      this.accountCaption = h("caption", {}, "");
      this.filter = h("select", { id: "standalone-filter", onchange: () => {
        this.standaloneFilter = this.filter.value; this.tokens = [null]; refresh();
      } }, h("option", { value: "" }, "All"), h("option", { value: "phase=awaitingApproval" }, "Awaiting approval"),
      h("option", { value: "phase=encrypting" }, "Encrypting"), h("option", { value: "outcome=Failed" }, "Failed"),
      h("option", { value: "outcome=Refused" }, "Refused"));
      this.prev = h("button", { type: "button", class: "secondary", onclick: () => { this.tokens.pop(); refresh(); } },
        "Previous");
      this.next = h("button", { type: "button", class: "secondary", onclick: () => {
        this.tokens.push(this.nextToken); refresh();
      } }, "Next");
      this.pageInfo = h("span", { class: "note" });
      replace(main, h("div", { class: "data" },
        h("h1", {}, "Fleet overview"),
        h("section", { "aria-label": "Counts" }, h("div", { class: "cards" }, Object.values(this.cards))),
        h("section", { "aria-labelledby": "h-outcomes" }, h("h2", { id: "h-outcomes" }, "Accounts by outcome"),
          h("p", { class: "note" }, "Each account counted once, by its newest orchestration."), this.outcomes),
        h("section", { "aria-labelledby": "h-phases" }, h("h2", { id: "h-phases" }, "Running accounts by phase"),
          this.phases),
        h("section", { "aria-labelledby": "h-rollouts" }, h("h2", { id: "h-rollouts" }, "Rollouts"),
          h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "rollouts" }, this.rolloutCaption,
            h("thead", {}, h("tr", {}, ["Rollout", "Status", "Started", "Progress", "Outcomes", "Awaiting approval"]
              .map((name) => h("th", { scope: "col" }, name)))), this.rolloutBody))),
        h("section", { "aria-labelledby": "h-standalone" }, h("h2", { id: "h-standalone" },
          "Account orchestrations started on their own"),
        h("p", { class: "note" }, "Started through POST /api/cmk/accounts or Event Grid enrolment, not by a rollout."),
        h("div", { class: "filters" }, h("label", { for: "standalone-filter" }, "Show", this.filter)),
        h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "standalone" }, this.accountCaption,
          h("thead", {}, h("tr", {}, ["Account", "Phase", "Outcome", "Started", "Encryption", "Findings"]
            .map((name) => h("th", { scope: "col" }, name)))), this.accountBody)),
        h("div", { class: "pager" }, this.prev, this.next, this.pageInfo))));
    }

    async refresh() {
      const token = this.tokens[this.tokens.length - 1];
      const query = new URLSearchParams(this.standaloneFilter);
      query.set("standalone", "true");
      query.set("top", "20");
      if (token) query.set("continuationToken", token);
      const [overview, rollouts, accounts] = await Promise.all([
        api("/cmk/overview"), api("/cmk/rollouts?top=50"), api(`/cmk/accounts?${query}`),
      ]);
      this.render(overview, rollouts, accounts);
    }

    render(overview, rollouts, accounts) {
      const a = overview.accounts;
      const c = this.cards;
      c.accounts.update(String(a.total), `${a.orchestrations} orchestrations`);
      c.running.update(String(a.running), a.running ? "accounts in an active phase" : "nothing running");
      c.approval.update(String(a.awaitingApproval), a.awaitingApproval ? "need a decision" : "none waiting",
        a.awaitingApproval ? "attention" : "");
      const oldest = a.oldestEncryption;
      c.oldest.update(oldest ? fmtDur(oldest.elapsedSeconds) : "—",
        oldest ? `${oldest.name}${oldest.percentComplete !== null ? ` · ${oldest.percentComplete}%` : ""}` : "none running");
      c.rollouts.update(String(overview.rollouts.total), `${overview.rollouts.running} running`);
      document.body.dataset.overview = JSON.stringify({
        total: a.total, running: a.running, awaitingApproval: a.awaitingApproval, rollouts: overview.rollouts.total,
      });
      this.outcomes.update(a.byOutcome, OUTCOMES, OUTCOME_LABEL, (key) => `bo-${key}`);
      const running = Object.fromEntries(Object.entries(a.byPhase).filter(([key]) => key !== "done"));
      this.phases.update(running, PHASES, PHASE_LABEL, (key) => `ph-${key}`);

      setText(this.rolloutCaption, `${rollouts.total} rollout${rollouts.total === 1 ? "" : "s"}, newest first`);
      syncRows(this.rolloutBody, this.rolloutRows, rollouts.rollouts, (r) => r.instanceId, (r) => {
        const tr = h("tr", { dataset: { id: r.instanceId } });
        tr.cells_ = ["Rollout", "Status", "Started", "Progress", "Outcomes", "Awaiting approval"].map((label) =>
          tr.appendChild(h("td", { "data-label": label })));
        return tr;
      }, (tr, r) => {
        const [id, status, started, progress, outcomes, approval] = tr.cells_;
        fill(id, [r.instanceId, r.dryRun], () => [link({ rollout: r.instanceId }, shortId(r.instanceId),
          { title: r.instanceId }), r.dryRun ? h("span", { class: "cell-sub" }, "dry run") : null]);
        const phase = r.phase && r.phase !== "done" && r.phase !== String(r.runtimeStatus).toLowerCase() ? r.phase : "";
        fill(status, [r.runtimeStatus, phase], () => [r.runtimeStatus, phase ? h("span", { class: "cell-sub" }, phase) : null]);
        setText(started, fmtTime(r.createdTime));
        fill(progress, [r.done, r.total], () => {
          const bar = h("span", { class: "progress", "aria-hidden": "true" }, h("span", {}));
          bar.firstChild.style.width = `${r.total ? (100 * r.done) / r.total : 0}%`;
          return [`${r.done} of ${r.total} done `, bar];
        });
        fill(outcomes, r.byOutcome, () => h("span", { class: "codes" }, OUTCOMES.filter((o) => r.byOutcome[o]).map((o) =>
          h("span", { class: `badge oc-${o}` }, `${OUTCOME_SYMBOL[o]} ${OUTCOME_LABEL[o]} ${r.byOutcome[o]}`))));
        setText(approval, String(r.awaitingApproval || 0));
      }, "No rollout yet: POST /api/cmk/rollouts starts one.", 6);

      setText(this.accountCaption, `${accounts.matched} account orchestration${accounts.matched === 1 ? "" : "s"}` +
        " started on their own, newest first");
      syncRows(this.accountBody, this.accountRows, accounts.accounts, (x) => x.instanceId, () => {
        const tr = h("tr", {});
        tr.cells_ = ["Account", "Phase", "Outcome", "Started", "Encryption", "Findings"].map((label) =>
          tr.appendChild(h("td", { "data-label": label })));
        return tr;
      }, (tr, x) => {
        const [name, phase, outcome, started, encryption, findings] = tr.cells_;
        fill(name, [x.instanceId, x.name, x.dryRun], () => [link({ instance: x.instanceId }, x.name),
          h("span", { class: "cell-sub" }, `${x.resourceGroup || ""}${x.dryRun ? " · dry run" : ""}`)]);
        fill(phase, x.phase, () => phaseTag(x.phase));
        fill(outcome, x.outcome || "", () => outcomeTag(x.outcome));
        setText(started, fmtTime(x.timings.startedAt || x.createdTime));
        fill(encryption, [x.encryption, x.phase], () => encryptionCell(x.encryption, x.phase));
        fill(findings, x.findings, () => findingCodes(x));
      }, "None.", 6);
      this.nextToken = accounts.continuationToken;
      this.prev.disabled = this.tokens.length <= 1;
      this.next.disabled = !accounts.continuationToken;
      setText(this.pageInfo, `Page ${this.tokens.length}`);
    }
  }

  /* Rows keyed by id, updated in place: an element that has focus is never removed or moved needlessly. */
  function syncRows(tbody, rows, items, keyOf, create, update, emptyText, columns, after) {
    const wanted = new Set(items.map(keyOf));
    for (const [key, row] of rows) {
      if (!wanted.has(key)) {
        row.remove();
        if (row.detail_) row.detail_.remove();
        rows.delete(key);
      }
    }
    const empty = tbody.querySelector("tr.empty-row");
    if (!items.length) {
      if (!empty) tbody.append(h("tr", { class: "empty-row" }, h("td", { colspan: columns, class: "empty" }, emptyText)));
      return;
    }
    if (empty) empty.remove();
    let cursor = null;
    for (const item of items) {
      const key = keyOf(item);
      let row = rows.get(key);
      if (!row) {
        row = create(item);
        rows.set(key, row);
      }
      update(row, item);
      if (after) after(row, item);
      const expected = cursor ? cursor.nextSibling : tbody.firstChild;
      if (expected !== row) tbody.insertBefore(row, expected);
      cursor = row;
      if (row.detail_) {
        if (cursor.nextSibling !== row.detail_) tbody.insertBefore(row.detail_, cursor.nextSibling);
        cursor = row.detail_;
      }
    }
  }

  // --- rollout view ------------------------------------------------------------------------------------------

  class RolloutView {
    constructor(id, params) {
      this.id = id;
      this.filters = {
        phase: params.get("phase") || "", outcome: params.get("outcome") || "",
        subscription: params.get("subscription") || "", search: params.get("q") || "",
      };
      this.size = PAGE_SIZES.includes(Number(params.get("size"))) ? Number(params.get("size")) : 50;
      this.tokens = [null];
      this.rows = new Map();
      this.open = new Set();
      this.timeline = null;
    }

    mount() {
      crumbs([["Fleet overview", {}], [`Rollout ${shortId(this.id)}`, { rollout: this.id }]]);
      document.title = `Rollout ${shortId(this.id)} · CMK rollout`;
      this.title = h("h1", {}, `Rollout ${this.id}`);
      this.meta = h("p", { class: "note" });
      this.cards = {
        total: card("Accounts", "…"), done: card("Done", "…"), running: card("Running", "…"),
        queued: card("Queued by the cap", "…"), approval: card("Awaiting approval", "…"),
        oldest: card("Oldest running encryption", "…"),
      };
      this.csv = h("button", { type: "button", class: "secondary", onclick: () =>
        download(`/cmk/rollouts/${encodeURIComponent(this.id)}/report`, `${this.id}.csv`).catch(showFailure) },
      "Download report (CSV)");
      this.json = h("button", { type: "button", class: "secondary", onclick: () =>
        download(`/cmk/rollouts/${encodeURIComponent(this.id)}/report?format=json`, `${this.id}.json`)
          .catch(showFailure) }, "Download report (JSON)");
      this.reportNote = h("span", { class: "note" });
      this.phaseBar = stackedBar("Accounts by phase");
      this.outcomeBar = stackedBar("Accounts by outcome");
      this.chart = new Timeline((row) => row.instanceId && navigate({ instance: row.instanceId, from: this.id }));
      this.timeBody = h("tbody", {});

      const f = this.filters;
      this.outcomeSelect = h("select", { id: "f-outcome", onchange: () => this.setFilter("outcome", this.outcomeSelect.value) });
      this.phaseSelect = h("select", { id: "f-phase", onchange: () => this.setFilter("phase", this.phaseSelect.value) });
      this.subSelect = h("select", { id: "f-subscription", onchange: () => this.setFilter("subscription", this.subSelect.value) });
      this.search = h("input", { id: "f-search", type: "search", value: f.search, placeholder: "name or id",
        oninput: () => { clearTimeout(this.searchTimer); this.searchTimer = setTimeout(() => this.setFilter("search", this.search.value.trim()), 300); } });
      this.clear = h("button", { type: "button", class: "secondary", onclick: () => {
        Object.keys(this.filters).forEach((key) => { this.filters[key] = ""; });
        this.search.value = "";
        this.tokens = [null];
        this.syncUrl();
        refresh();
      } }, "Clear filters");
      this.sizeSelect = h("select", { id: "f-size", onchange: () => {
        this.size = Number(this.sizeSelect.value); this.tokens = [null]; this.syncUrl(); refresh();
      } }, PAGE_SIZES.map((n) => h("option", { value: n, selected: n === this.size }, `${n} per page`)));
      this.matchInfo = h("p", { class: "note", id: "match-info", "aria-live": "polite" });
      this.body = h("tbody", {});
      this.prev = h("button", { type: "button", class: "secondary", onclick: () => { this.tokens.pop(); refresh(); } }, "Previous page");
      this.next = h("button", { type: "button", class: "secondary", onclick: () => { this.tokens.push(this.nextToken); refresh(); } }, "Next page");
      this.pageInfo = h("span", { class: "note" });

      replace(main, h("div", { class: "data" },
        this.title, this.meta,
        h("div", { class: "links" }, this.csv, this.json, this.reportNote),
        h("section", { "aria-label": "Counts" }, h("div", { class: "cards" }, Object.values(this.cards))),
        h("section", { "aria-labelledby": "h-phase" }, h("h2", { id: "h-phase" }, "Accounts by phase"), this.phaseBar),
        h("section", { "aria-labelledby": "h-outcome" }, h("h2", { id: "h-outcome" }, "Accounts by outcome"), this.outcomeBar),
        h("section", { "aria-labelledby": "h-timeline" }, h("h2", { id: "h-timeline" }, "Timeline"),
          h("p", { class: "note" }, "One row per account, its steps in colour over time (orchestration time, from the " +
            "rollout's start). Hatched grey: queued behind the concurrency cap. The strip above counts accounts in an " +
            "active phase against the cap (an orchestration that was already running when the rollout began, such as " +
            "an approval-gated request, counts from its own start). Every time is also in the table below and on " +
            "each account's page."),
          this.chart.box,
          h("h3", {}, "Where the time goes"),
          h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "time-table" },
            h("caption", {}, "Time spent in each phase, summed over accounts"),
            h("thead", {}, h("tr", {}, ["Phase", "Accounts", "Total", "Longest"].map((n) => h("th", { scope: "col" }, n)))),
            this.timeBody))),
        h("section", { "aria-labelledby": "h-accounts" }, h("h2", { id: "h-accounts" }, "Accounts"),
          h("div", { class: "filters", role: "search", "aria-label": "Filter accounts" },
            h("label", { for: "f-outcome" }, "Outcome", this.outcomeSelect),
            h("label", { for: "f-phase" }, "Phase", this.phaseSelect),
            h("label", { for: "f-subscription" }, "Subscription", this.subSelect),
            h("label", { for: "f-search" }, "Search", this.search),
            h("label", { for: "f-size" }, "Rows", this.sizeSelect),
            this.clear),
          this.matchInfo,
          h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "accounts" },
            h("caption", { class: "visually-hidden" }, "Accounts of this rollout"),
            h("thead", {}, h("tr", {}, ["Account", "Subscription · resource group", "Phase", "Outcome", "Findings",
              "Encryption: elapsed of estimate", "Azure %"].map((n) => h("th", { scope: "col" }, n)))),
            this.body)),
          h("div", { class: "pager" }, this.prev, this.next, this.pageInfo))));
    }

    setFilter(name, value) {
      if (this.filters[name] === value) return;
      this.filters[name] = value;
      this.tokens = [null];
      this.syncUrl();
      refresh();
    }

    syncUrl() {
      const params = { rollout: this.id };
      const f = this.filters;
      if (f.phase) params.phase = f.phase;
      if (f.outcome) params.outcome = f.outcome;
      if (f.subscription) params.subscription = f.subscription;
      if (f.search) params.q = f.search;
      if (this.size !== 50) params.size = this.size;
      history.replaceState(null, "", `?${new URLSearchParams(params)}`);
    }

    async refresh() {
      const f = this.filters;
      const query = new URLSearchParams({ top: String(this.size) });
      if (f.phase) query.set("phase", f.phase);
      if (f.outcome) query.set("outcome", f.outcome);
      if (f.subscription) query.set("subscription", f.subscription);
      if (f.search) query.set("search", f.search);
      const token = this.tokens[this.tokens.length - 1];
      if (token) query.set("continuationToken", token);
      const id = encodeURIComponent(this.id);
      const started = performance.now();
      const [page, timeline] = await Promise.all([
        api(`/cmk/rollouts/${id}/accounts?${query}`), api(`/cmk/rollouts/${id}/timeline`),
      ]);
      const fetched = performance.now();
      this.render(page, timeline);
      metrics.lastFetchMs = Math.round(fetched - started);
      metrics.lastRenderMs = Math.round(performance.now() - fetched);
    }

    render(page, timeline) {
      const r = page.rollout;
      const req = r.request || {};
      const key = req.keyUri ? `key ${req.keyUri}` : req.keyPolicy ? "key from the key policy" : "key from CMK_KEY_POLICY";
      const phase = r.phase && r.phase !== String(r.runtimeStatus).toLowerCase() && r.phase !== "done" ? ` (${r.phase})` : "";
      setText(this.meta, `${r.runtimeStatus}${phase} · started ${fmtTime(r.createdTime)}` +
        `${r.timings && r.timings.finishedAt ? ` · finished ${fmtTime(r.timings.finishedAt)}` : ""}` +
        ` · ${r.dryRun ? "dry run · " : ""}${key} · at most ${req.maxConcurrency ?? "?"} at once` +
        ` (${req.maxConcurrencyPerSubscription ?? "?"} per subscription) · ${r.lanes} lanes`);
      this.csv.disabled = this.json.disabled = !r.reportReady;
      setText(this.reportNote, r.reportReady ? "" : "The report exists once the rollout completes.");
      const byPhase = r.byPhase || {};
      const running = Object.entries(byPhase).filter(([k]) => !["done", "queued"].includes(k)).reduce((s, [, v]) => s + v, 0);
      const c = this.cards;
      c.total.update(String(r.total));
      c.done.update(String(r.done), r.total ? `${Math.round((100 * r.done) / r.total)}%` : "");
      c.running.update(String(running));
      c.queued.update(String(byPhase.queued || 0), `cap ${req.maxConcurrency ?? "?"}`);
      c.approval.update(String(r.awaitingApproval), r.awaitingApproval ? "need a decision" : "", r.awaitingApproval ? "attention" : "");
      const oldest = r.oldestEncryption;
      c.oldest.update(oldest ? fmtDur(oldest.elapsedSeconds) : "—", oldest ? oldest.name : "none running");
      this.phaseBar.update(byPhase, PHASES, PHASE_LABEL, (k) => `ph-${k}`);
      this.outcomeBar.update(r.byOutcome || {}, OUTCOMES, OUTCOME_LABEL, (k) => `bo-${k}`);
      document.body.dataset.rollout = JSON.stringify({ total: r.total, done: r.done, byPhase, byOutcome: r.byOutcome });

      this.chart.draw(timeline, req.maxConcurrency);
      const totals = timeline.phaseTotals || {};
      replace(this.timeBody, PHASES.filter((p) => totals[p]).map((p) => h("tr", {},
        h("td", { "data-label": "Phase" }, phaseTag(p)), h("td", { "data-label": "Accounts", class: "num" }, String(totals[p].accounts)),
        h("td", { "data-label": "Total", class: "num" }, fmtDur(totals[p].seconds)),
        h("td", { "data-label": "Longest", class: "num" }, fmtDur(totals[p].maxSeconds)))));

      fillSelect(this.outcomeSelect, this.filters.outcome, OUTCOMES, r.byOutcome || {}, OUTCOME_LABEL);
      fillSelect(this.phaseSelect, this.filters.phase, PHASES, byPhase, PHASE_LABEL);
      const subs = r.bySubscription || {};
      fillSelect(this.subSelect, this.filters.subscription, Object.keys(subs).sort(), subs, {});

      const first = this.tokens.length > 1 ? (this.tokens.length - 1) * this.size + 1 : 1;
      const last = first + page.accounts.length - 1;
      const filtered = Object.values(this.filters).some(Boolean);
      setText(this.matchInfo, page.matched
        ? `Showing ${first}–${last} of ${page.matched}${filtered ? ` matching (of ${r.total})` : ""}`
        : filtered ? `No account matches these filters (of ${r.total}).` : "No accounts yet.");
      document.body.dataset.matched = String(page.matched);
      syncRows(this.body, this.rows, page.accounts, (a) => a.accountId, (a) => this.createRow(a),
        (tr, a) => this.updateRow(tr, a), "No accounts to show.", 7);
      this.nextToken = page.continuationToken;
      this.prev.disabled = this.tokens.length <= 1;
      this.next.disabled = !page.continuationToken;
      setText(this.pageInfo, `Page ${this.tokens.length}`);
    }

    createRow(a) {
      const tr = h("tr", { dataset: { account: a.accountId, name: a.name } });
      const detailId = `detail-${Math.random().toString(36).slice(2)}`;
      tr.toggle_ = h("button", { type: "button", class: "secondary expander", "aria-expanded": "false",
        "aria-controls": detailId, onclick: () => {
          if (this.open.has(a.accountId)) this.open.delete(a.accountId); else this.open.add(a.accountId);
          this.updateRow(tr, tr.item_);
        } }, h("span", { "aria-hidden": "true" }, "▸"), h("span", { class: "visually-hidden" }, `Details of ${a.name}`));
      tr.cells_ = ["Account", "Subscription · resource group", "Phase", "Outcome", "Findings", "Encryption", "Azure %"]
        .map((label) => tr.appendChild(h("td", { "data-label": label })));
      tr.detail_ = h("tr", { class: "detail", id: detailId, hidden: true }, h("td", { colspan: 7 }));
      return tr;
    }

    updateRow(tr, a) {
      tr.item_ = a;
      const [name, where, phase, outcome, findings, encryption, percent] = tr.cells_;
      if (!name.contains(tr.toggle_)) replace(name, h("div", { class: "acct" }, tr.toggle_, h("span", {})));
      fill(tr.toggle_.nextSibling, [a.instanceId, a.name, a.lane], () => [
        a.instanceId ? link({ instance: a.instanceId, from: this.id }, a.name) : a.name,
        h("span", { class: "cell-sub" }, a.lane !== null && a.lane !== undefined ? `lane ${a.lane}` : "not planned")]);
      fill(where, [a.subscriptionId, a.resourceGroup], () => [h("span", { class: "mono", title: a.subscriptionId || "" },
        shortId(a.subscriptionId || "")), h("span", { class: "cell-sub" }, a.resourceGroup || "")]);
      fill(phase, [a.phase, a.instanceId], () => [phaseTag(a.phase), a.phase === "awaitingApproval" && a.instanceId
        ? h("span", { class: "cell-sub" }, link({ instance: a.instanceId, from: this.id }, "Review and approve")) : null]);
      fill(outcome, a.outcome || "", () => outcomeTag(a.outcome));
      fill(findings, a.findings, () => findingCodes(a));
      fill(encryption, [a.encryption, a.phase], () => encryptionCell(a.encryption, a.phase));
      setText(percent, a.percentComplete === null || a.percentComplete === undefined ? "—" : `${a.percentComplete}%`);
      const isOpen = this.open.has(a.accountId);
      tr.classList.toggle("open", isOpen);
      tr.toggle_.setAttribute("aria-expanded", String(isOpen));
      setText(tr.toggle_.firstChild, isOpen ? "▾" : "▸");
      tr.detail_.hidden = !isOpen;
      if (isOpen) fill(tr.detail_.firstChild, a, () => accountSummary(a, this.id));
    }
  }

  function fillSelect(select, current, keys, counts, labels) {
    const options = [["", "All"]].concat(keys.filter((k) => counts[k] || k === current)
      .map((k) => [k, `${labels[k] || k} (${counts[k] || 0})`]));
    const signature = JSON.stringify(options);
    if (select.signature_ !== signature) {
      replace(select, options.map(([value, label]) => h("option", { value }, label)));
      select.signature_ = signature;
    }
    select.value = current;
  }

  /* The open row: reason, findings with their messages, and the step times. */
  function accountSummary(a, rolloutId) {
    return h("div", { class: "grid2" },
      h("div", {},
        a.reason ? h("p", {}, h("strong", {}, "Reason: "), a.reason) : null,
        a.detail && a.phase !== "done" ? h("p", {}, h("strong", {}, "Now: "), a.detail) : null,
        a.nextPollAt ? h("p", {}, h("strong", {}, "Next status read: "), fmtTime(a.nextPollAt)) : null,
        a.findings.length ? h("ul", {}, a.findings.map((f) => h("li", {},
          h("span", { class: `badge sev-${f.severity || "warning"}` }, f.severity || "finding"), " ",
          h("code", {}, f.code), f.message ? `: ${f.message}` : ""))) : h("p", { class: "note" }, "No findings."),
        a.instanceId ? h("p", {}, link({ instance: a.instanceId, from: rolloutId }, "Open the account view"),
          " · ", h("code", {}, a.instanceId)) : null),
      h("div", {}, h("ol", { class: "steps" }, a.segments.map((s) => h("li", { class: s.end ? "" : "current" },
        h("span", { "aria-hidden": "true" }, s.end ? "✓" : "▶"), phaseTag(s.phase),
        h("span", {}, fmtRange(s.start, s.end), s.end ? ` (${fmtDur(between(s.start, s.end))})` : ""))))));
  }

  // --- the timeline (canvas) ---------------------------------------------------------------------------------

  class Timeline {
    constructor(onPick) {
      this.onPick = onPick;
      this.canvas = h("canvas", { role: "img", "aria-label": "Timeline of the rollout's accounts" });
      this.scroll = h("div", { class: "timeline-scroll" }, this.canvas);
      this.tip = h("div", { class: "tip", hidden: true, "aria-hidden": "true" });
      this.box = h("div", { class: "timeline-box" }, this.scroll, this.tip);
      this.layout = null;
      this.canvas.addEventListener("mousemove", (event) => this.hover(event));
      this.canvas.addEventListener("mouseleave", () => { this.tip.hidden = true; });
      this.canvas.addEventListener("click", (event) => {
        const hit = this.hit(event);
        if (hit) this.onPick(hit.row);
      });
      this.resizeObserver = new ResizeObserver(() => { if (this.data) this.draw(this.data, this.cap); });
      this.resizeObserver.observe(this.box);
    }

    draw(data, cap) {
      this.data = data;
      this.cap = cap;
      const rows = data.accounts;
      const width = Math.max(280, this.box.clientWidth - 10);
      const n = rows.length;
      const rowH = n <= 40 ? 18 : n <= 120 ? 8 : n <= 400 ? 4 : 3;
      const labelW = rowH >= 18 ? Math.min(170, Math.floor(width * 0.3)) : 0;
      const stripH = 54;
      const axisH = 22;
      const top = stripH + axisH;
      const height = top + Math.max(1, n) * rowH + 4;
      const end = Math.max(data.nowSeconds || 0, data.endSeconds || 0, 1);
      const plotW = width - labelW - 8;
      const x = (s) => labelW + (Math.max(0, s) / end) * plotW;
      const ratio = window.devicePixelRatio || 1;
      const canvas = this.canvas;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.height = `${height}px`;
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = "11px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      this.layout = { rows, rowH, top, x, end, labelW, plotW };

      // In flight (and queued) over time, against the cap.
      const events = [];
      for (const row of rows) {
        for (const [phase, start, stop] of row.segments) {
          const kind = phase === "queued" ? "q" : "f";
          events.push([start, kind, 1], [stop === null ? end : stop, kind, -1]);
        }
      }
      events.sort((a, b) => a[0] - b[0] || a[2] - b[2]);
      let flying = 0;
      let queued = 0;
      let peak = Math.max(1, cap || 1);
      const steps = [[0, 0, 0]];
      for (const [t, kind, delta] of events) {
        if (kind === "f") flying += delta; else queued += delta;
        steps.push([t, flying, queued]);
        peak = Math.max(peak, flying);
      }
      const y = (count) => stripH - 4 - (count / peak) * (stripH - 12);
      ctx.fillStyle = "#cfe3f1";
      ctx.strokeStyle = "#0072b2";
      ctx.beginPath();
      ctx.moveTo(x(0), y(0));
      let last = 0;
      for (const [t, f] of steps) { ctx.lineTo(x(t), y(last)); ctx.lineTo(x(t), y(f)); last = f; }
      ctx.lineTo(x(end), y(last));
      ctx.lineTo(x(end), y(0));
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
      if (cap) {
        ctx.setLineDash([5, 4]);
        ctx.strokeStyle = "#d55e00";
        ctx.beginPath();
        ctx.moveTo(x(0), y(cap));
        ctx.lineTo(x(end), y(cap));
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = "#8a3100";
        ctx.textAlign = "right";
        ctx.fillText(`cap ${cap}`, labelW + plotW - 2, Math.max(8, y(cap) - 7));
        ctx.textAlign = "left";
      }
      ctx.fillStyle = "#1b1f24";
      ctx.fillText(`accounts in an active phase (peak ${Math.max(...steps.map((s) => s[1]))})`, labelW + 4, 8);

      // Time axis.
      ctx.strokeStyle = "#d0d7de";
      ctx.fillStyle = "#57606a";
      const tick = niceStep(end / Math.max(2, Math.floor(plotW / 90)));
      for (let t = 0; t <= end; t += tick) {
        ctx.beginPath();
        ctx.moveTo(x(t), stripH);
        ctx.lineTo(x(t), height);
        ctx.stroke();
        ctx.fillText(`+${fmtTick(t)}`, x(t) + 2, stripH + axisH / 2);
      }

      // One row per account.
      rows.forEach((row, i) => {
        const y0 = top + i * rowH;
        if (labelW) {
          ctx.fillStyle = "#1b1f24";
          ctx.fillText(clip(ctx, row.name, labelW - 6), 2, y0 + rowH / 2);
        }
        for (const [phase, start, stop] of row.segments) {
          const x0 = x(start);
          const x1 = Math.max(x0 + 1, x(stop === null ? end : stop));
          ctx.fillStyle = fillFor(ctx, phase);
          ctx.fillRect(x0, y0 + (rowH > 4 ? 1 : 0), x1 - x0, rowH > 4 ? rowH - 2 : rowH);
        }
      });
      if (data.endSeconds === null) {
        ctx.strokeStyle = "#1b1f24";
        ctx.beginPath();
        ctx.moveTo(x(data.nowSeconds), stripH);
        ctx.lineTo(x(data.nowSeconds), height);
        ctx.stroke();
      }
      canvas.setAttribute("aria-label", `Timeline of ${n} accounts over ${fmtDur(end)}; ` +
        `${rows.filter((r) => r.phase === "done").length} done. The table below lists every account's times.`);
    }

    hit(event) {
      if (!this.layout) return null;
      const rect = this.canvas.getBoundingClientRect();
      const px = event.clientX - rect.left;
      const py = event.clientY - rect.top;
      const { rows, rowH, top, labelW, plotW, end } = this.layout;
      const index = Math.floor((py - top) / rowH);
      if (index < 0 || index >= rows.length) return null;
      const row = rows[index];
      const t = ((px - labelW) / plotW) * end;
      const segment = row.segments.find(([, s, e]) => t >= s && t <= (e === null ? end : e));
      return { row, segment };
    }

    hover(event) {
      const hit = this.hit(event);
      if (!hit) { this.tip.hidden = true; this.canvas.style.cursor = "default"; return; }
      const { row, segment } = hit;
      const part = segment
        ? `${PHASE_LABEL[segment[0]] || segment[0]}: +${fmtDur(segment[1])} → ${segment[2] === null ? "now" : `+${fmtDur(segment[2])}`}` +
          ` (${fmtDur((segment[2] === null ? this.layout.end : segment[2]) - segment[1])})`
        : PHASE_LABEL[row.phase] || row.phase;
      setText(this.tip, `${row.name} · ${row.outcome || PHASE_LABEL[row.phase]} · ${part}`);
      this.tip.hidden = false;
      this.tip.style.left = `${Math.min(event.clientX + 12, window.innerWidth - 300)}px`;
      this.tip.style.top = `${event.clientY + 12}px`;
      this.canvas.style.cursor = row.instanceId ? "pointer" : "default";
    }
  }

  function fmtTick(seconds) {
    if (seconds < 60) return `${seconds}s`;
    if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
    if (seconds < 86400) return seconds % 3600 ? `${Math.floor(seconds / 3600)}h${Math.round((seconds % 3600) / 60)}m` : `${seconds / 3600}h`;
    return seconds % 86400 ? `${Math.floor(seconds / 86400)}d${Math.round((seconds % 86400) / 3600)}h` : `${seconds / 86400}d`;
  }
  function niceStep(raw) {
    const steps = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400];
    return steps.find((s) => s >= raw) || Math.ceil(raw / 86400) * 86400;
  }
  function clip(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    let cut = text;
    while (cut.length > 1 && ctx.measureText(`${cut}…`).width > width) cut = cut.slice(0, -1);
    return `${cut}…`;
  }
  const patterns = {};
  function fillFor(ctx, phase) {
    const [colour, kind, ink] = PHASE_FILL[phase] || ["#8c959f"];
    if (!kind) return colour;
    if (!patterns[phase]) {
      const tile = document.createElement("canvas");
      tile.width = tile.height = 6;
      const t = tile.getContext("2d");
      t.fillStyle = colour;
      t.fillRect(0, 0, 6, 6);
      t.strokeStyle = ink;
      t.fillStyle = ink;
      t.lineWidth = 1;
      t.beginPath();
      if (kind === "hatch") { t.moveTo(0, 6); t.lineTo(6, 0); }
      if (kind === "backhatch") { t.moveTo(0, 0); t.lineTo(6, 6); }
      if (kind === "stripes") { t.moveTo(5.5, 0); t.lineTo(5.5, 6); }
      t.stroke();
      if (kind === "dots") t.fillRect(2, 2, 1.5, 1.5);
      patterns[phase] = ctx.createPattern(tile, "repeat");
    }
    return patterns[phase];
  }

  // --- account view ------------------------------------------------------------------------------------------

  class AccountView {
    constructor(id, from) {
      this.id = id;
      this.from = from;
    }

    mount() {
      const trail = [["Fleet overview", {}]];
      if (this.from) trail.push([`Rollout ${shortId(this.from)}`, { rollout: this.from }]);
      trail.push([`Account ${shortId(this.id)}`, { instance: this.id, ...(this.from ? { from: this.from } : {}) }]);
      crumbs(trail);
      this.title = h("h1", {}, "Account");
      this.sub = h("p", { class: "note mono" });
      this.cards = {
        phase: card("Phase", "…"), outcome: card("Outcome", "…"), status: card("Orchestration", "…"),
        encryption: card("Encryption", "…"),
      };
      this.reason = h("p", {});
      this.approval = h("section", { class: "approval", hidden: true, "aria-labelledby": "h-approval" });
      this.steps = h("ol", { class: "steps" });
      this.plan = h("div", {});
      this.findings = h("div", {});
      this.operation = h("dl", { class: "facts" });
      replace(main, h("div", { class: "data" }, this.title, this.sub,
        h("div", { class: "cards" }, Object.values(this.cards)), this.reason, this.approval,
        h("div", { class: "grid2" },
          h("section", { "aria-labelledby": "h-steps" }, h("h2", { id: "h-steps" }, "Steps"), this.steps),
          h("section", { "aria-labelledby": "h-plan" }, h("h2", { id: "h-plan" }, "Plan"), this.plan,
            h("h2", { id: "h-operation" }, "Operation"), this.operation)),
        h("section", { "aria-labelledby": "h-findings" }, h("h2", { id: "h-findings" }, "Findings"), this.findings)));
    }

    async refresh() {
      this.data = await api(`/cmk/instances/${encodeURIComponent(this.id)}/details`);
      this.render(this.data);
    }

    render(d) {
      document.title = `${d.name} · CMK rollout`;
      setText(this.title, d.name);
      setText(this.sub, `${d.accountId} · orchestration ${d.instanceId}`);
      this.cards.phase.update(PHASE_LABEL[d.phase] || d.phase, d.detail && d.phase !== "done" ? d.detail : "");
      this.cards.outcome.update(d.outcome ? `${OUTCOME_SYMBOL[d.outcome] || ""} ${OUTCOME_LABEL[d.outcome] || d.outcome}` : "in progress",
        d.dryRun ? "dry run" : "", d.outcome ? `oc-${d.outcome}` : "");
      this.cards.status.update(d.runtimeStatus, `updated ${fmtTime(d.lastUpdatedTime)}`);
      const e = d.encryption;
      this.cards.encryption.update(e && e.elapsedSeconds !== null ? fmtDur(e.elapsedSeconds) : "—",
        e && e.percentComplete !== null && e.percentComplete !== undefined ? `${e.percentComplete}% (Azure)` :
          d.operationStatus ? `status ${d.operationStatus}` : "");
      replace(this.reason, d.reason ? [h("strong", {}, "Reason: "), d.reason] : []);
      document.body.dataset.account = JSON.stringify({ phase: d.phase, outcome: d.outcome });
      this.renderApproval(d);
      this.renderSteps(d);
      this.renderPlan(d);
      this.renderFindings(d);
      const op = d.operation || {};
      replace(this.operation,
        h("dt", {}, "Status"), h("dd", {}, op.status || "—"),
        h("dt", {}, "Next status read"), h("dd", {}, op.nextPollAt ? fmtTime(op.nextPollAt) : "—"),
        h("dt", {}, "Status reads"), h("dd", {}, String(op.polls || 0)),
        h("dt", {}, "Azure's percent"), h("dd", {}, op.percentComplete === null || op.percentComplete === undefined ? "not reported" : `${op.percentComplete}%`),
        h("dt", {}, "Status URL"), h("dd", { class: "mono" }, op.statusUrl || "—"),
        op.error ? [h("dt", {}, "Error"), h("dd", {}, `${op.error.code}: ${op.error.message}`)] : []);
    }

    renderApproval(d) {
      const a = d.approval || {};
      const approvedAt = d.timings && d.timings.approvedAt;
      if (!a.awaiting && !a.decision && !approvedAt) { this.approval.hidden = true; return; }
      this.approval.hidden = false;
      if (!a.awaiting) {
        // The decision's comment is in the orchestration's history until its monitor continues as new.
        const dec = a.decision || { approved: true, by: null, comment: null };
        const when = approvedAt ? ` at ${fmtTime(approvedAt)}` : "";
        fill(this.approval, [dec, approvedAt], () => [h("h2", { id: "h-approval" }, dec.approved ? "Approved" : "Rejected"),
          h("p", {}, `${dec.approved ? "Approved" : "Rejected"}${who(dec.by) ? ` by ${who(dec.by)}` : ""}${when}`,
            dec.comment ? `: ${dec.comment}` : ".")]);
        delete this.approval.dataset.awaiting;
        return;
      }
      if (this.approval.dataset.awaiting === "1") return; // keep the buttons (and focus) as they are
      this.approval.dataset.awaiting = "1";
      this.approval.sig_ = null;
      replace(this.approval, h("h2", { id: "h-approval" }, "Waiting for your approval"),
        h("p", {}, "Preflight passed, the identity and key access are ready. Approving lets the app send the key " +
          "PATCH, which cannot be undone: Azure then encrypts all the account's data with this key. " +
          `Without a decision by ${fmtTime(a.deadline)} the account is refused.`),
        h("div", { class: "actions" },
          h("button", { type: "button", id: "approve", onclick: () => decide(this, true) }, "Approve…"),
          h("button", { type: "button", id: "reject", class: "danger", onclick: () => decide(this, false) }, "Reject…")));
    }

    renderSteps(d) {
      const segments = d.segments || [];
      const approval = (d.approval && d.approval.required) || segments.some((s) => s.phase === "awaitingApproval");
      const running = d.phase !== "done";
      const items = [];
      for (const step of STEPS) {
        if (step === "awaitingApproval" && !approval) continue;
        // Only a rollout's account prepared ahead of its lane's slot waits for one.
        if (step === "waitingForSlot" && !segments.some((s) => s.phase === step)) continue;
        const seg = segments.find((s) => s.phase === step) ||
          (step === "preflight" ? segments.find((s) => s.phase === "waitingForAccount") : null);
        let state = "pending";
        let when = running ? "not yet" : "skipped";
        if (seg) {
          state = seg.end ? "done" : "current";
          when = `${fmtRange(seg.start, seg.end)} (${fmtDur(between(seg.start, seg.end || d.now))})`;
        }
        items.push(h("li", { class: state }, h("span", { "aria-hidden": "true" }, state === "done" ? "✓" : state === "current" ? "▶" : "○"),
          h("span", {}, phaseTag(seg ? seg.phase : step), h("span", { class: "visually-hidden" }, ` (${state})`)), h("span", {}, when)));
      }
      if (d.timings && d.timings.finishedAt) {
        items.push(h("li", {}, h("span", { "aria-hidden": "true" }, "■"), h("span", {}, "Finished"),
          h("span", {}, `${fmtTime(d.timings.finishedAt)} · in all ${fmtDur(between(d.timings.startedAt, d.timings.finishedAt))}`)));
      }
      replace(this.steps, items);
    }

    renderPlan(d) {
      const p = d.plan;
      if (!p) {
        replace(this.plan, h("p", { class: "note" }, d.phase === "preflight" || d.phase === "waitingForAccount" || d.phase === "starting"
          ? "No plan yet: preflight has not finished." : "No plan: preflight did not pass, or this orchestration followed an encryption another one started."),
        h("dl", { class: "facts" }, h("dt", {}, "Key URI"), h("dd", { class: "mono" }, d.keyUri || d.request.keyUri || "—")));
        return;
      }
      replace(this.plan, planFacts(p));
    }

    renderFindings(d) {
      if (!d.findings.length) { replace(this.findings, h("p", { class: "note" }, "No findings.")); return; }
      replace(this.findings, d.findings.map((f) => h("div", { class: `finding ${f.severity}` },
        h("p", {}, h("span", { class: `badge sev-${f.severity}` }, f.severity === "blocking" ? "✕ blocking" : "⚠ warning"), " ",
          h("code", {}, f.code)),
        h("p", {}, f.message),
        h("p", {}, h("strong", {}, "What to do: "), f.remedy))));
    }
  }

  /* Who decided: a name, or {displayName, objectId} where the app records the caller's identity. */
  function who(by) {
    if (!by) return "";
    return typeof by === "object" ? by.displayName || by.objectId || "" : String(by);
  }

  function planFacts(p) {
    const identity = p.identity || {};
    const vault = p.vault || {};
    return h("dl", { class: "facts" },
      h("dt", {}, "Identity"), h("dd", {}, identity.type === "UserAssigned" ? `user-assigned: ${identity.resourceId}` : "system-assigned"),
      h("dt", {}, "Default identity"), h("dd", { class: "mono" }, p.defaultIdentity || "—"),
      h("dt", {}, "Key vault"), h("dd", { class: "mono" }, vault.id || "—"),
      h("dt", {}, "Vault permission model"), h("dd", {}, vault.permissionModel === "rbac"
        ? "Azure RBAC (role Key Vault Crypto Service Encryption User)" : "access policies (get, wrapKey, unwrapKey)"),
      h("dt", {}, "Key URI"), h("dd", { class: "mono" }, p.keyUri || "—"));
  }

  /* Approve / Reject: show the plan, ask for a comment, then POST the decision. */
  function decide(view, approve) {
    const d = view.data;
    const dialog = document.getElementById("decision");
    const comment = document.getElementById("decision-comment");
    const error = document.getElementById("decision-error");
    const confirm = document.getElementById("decision-confirm");
    setText(document.getElementById("decision-title"), `${approve ? "Approve" : "Reject"} ${d.name}`);
    setText(document.getElementById("decision-intro"), approve
      ? "The app will send the key PATCH with this plan. Azure then encrypts the account's data; this cannot be undone."
      : "The account will be refused: nothing irreversible has been done, and it can be started again later.");
    replace(document.getElementById("decision-plan"), d.plan ? planFacts(d.plan) : h("p", {}, `Key URI: ${d.keyUri}`),
      d.findings.filter((f) => f.severity === "warning").map((f) => h("p", {}, "⚠ ", h("code", {}, f.code), `: ${f.message}`)));
    setText(confirm, approve ? "Approve and send the key" : "Reject");
    confirm.className = approve ? "" : "danger";
    comment.value = "";
    error.hidden = true;
    const form = document.getElementById("decision-form");
    form.onsubmit = async (event) => {
      event.preventDefault();
      if (!comment.value.trim()) { error.hidden = false; setText(error, "A comment is required."); comment.focus(); return; }
      confirm.disabled = true;
      try {
        await api(`/cmk/instances/${encodeURIComponent(d.instanceId)}/${approve ? "approve" : "reject"}`,
          { method: "POST", body: { comment: comment.value.trim() } });
        dialog.close();
        view.approval.dataset.awaiting = "";
        announce(approve ? "Approved: the account goes on." : "Rejected: the account is refused.");
        refresh();
      } catch (failure) {
        error.hidden = false;
        setText(error, `Not sent: ${failure.message}`);
      } finally {
        confirm.disabled = false;
      }
    };
    document.getElementById("decision-cancel").onclick = () => dialog.close();
    dialog.showModal();
    comment.focus();
  }

  route();
})();
