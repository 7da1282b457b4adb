// The dispatcher's console: every view read from the public API with the signed-in
// user's token, kept in sessionStorage (gone with the tab), refreshed every few seconds.
// No framework, no build step: a module the browser runs as it is.

const TOKEN = "dispatcher.token";
const REFRESH_MS = 5000;
const STALE_MS = 15000;
const CHANGE_ROLES = ["agent", "admin"];
const STATES = ["free", "booting", "assigned", "faulty"];
const COLORS = { free: "#1b7f3b", booting: "#2a6ad3", assigned: "#a05a00", faulty: "#b00020" };
const NO_LIMIT = "no limit";

const $ = (id) => document.getElementById(id);
let me = null; // {user, roles} of the signed-in user
let lastGood = 0;
let lastError = "";
let timer = null;
let history = { before: null, next: null };
let dryRunDone = false;

class SessionEnded extends Error {}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// A call of the API with the token, its answer once known not to be an error: a 401 of
// a token signs out, any other error is thrown with the API's message.
async function call(method, path, body, accept = "application/json") {
  const token = sessionStorage.getItem(TOKEN);
  const headers = { Accept: accept };
  if (token) headers["X-Auth-Token"] = token;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/api/v1${path}`, init);
  if (response.status === 401 && token) {
    signOut("Your session has ended (the token expired or was revoked): sign in again.");
    throw new SessionEnded();
  }
  if (!response.ok) {
    const data = await jsonOf(response);
    throw new ApiError(response.status, (data && data.message) || response.statusText);
  }
  return response;
}

async function jsonOf(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

async function api(method, path, body) {
  return jsonOf(await call(method, path, body));
}

function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function cell(content) {
  const td = el("td");
  td.append(content);
  return td;
}

function can(roles) {
  return me !== null && me.roles.some((role) => roles.includes(role));
}

// -- signing in and out ------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const message = $("sign-in-message");
  message.textContent = "";
  try {
    const answer = await api("POST", "/auth", {
      username: $("username").value,
      password: $("password").value,
    });
    sessionStorage.setItem(TOKEN, answer.token);
    $("password").value = "";
    await start();
  } catch (error) {
    message.textContent = error.status === 403 ? "Wrong username or password." : error.message;
  }
}

async function start() {
  me = await api("GET", "/auth");
  $("who").textContent = `Signed in as ${me.user}` + (me.roles.length ? ` (${me.roles.join(", ")})` : "");
  $("who").hidden = false;
  $("sign-out").hidden = false;
  $("sign-in").hidden = true;
  $("console").hidden = false;
  for (const node of document.querySelectorAll(".for-agent")) node.hidden = !can(CHANGE_ROLES);
  for (const node of document.querySelectorAll(".for-admin")) node.hidden = !can(["admin"]);
  await loadClouds();
  await refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN);
  me = null;
  clearInterval(timer);
  timer = null;
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("freshness").textContent = "";
  forgetUsage();
  $("sign-in-message").textContent = message || "";
  $("username").focus();
}

async function signOutClicked() {
  try {
    await api("DELETE", "/auth");
  } finally {
    signOut("Signed out: the token is revoked.");
  }
}

// -- refreshing ----------------------------------------------------------------------

async function refresh() {
  const results = await Promise.allSettled([
    showClouds(),
    showPools(),
    showAssignments(),
    showRequests(),
    showHistory(),
    showMyQuota(),
    showQuotaRules(),
    showUsage(),
  ]);
  if (me === null) return;
  const failed = results.find((result) => result.status === "rejected");
  if (failed) {
    lastError = failed.reason.message;
  } else {
    lastGood = Date.now();
    lastError = "";
  }
  showFreshness();
}

function showFreshness() {
  const node = $("freshness");
  const age = Date.now() - lastGood;
  const stale = !lastGood || age > STALE_MS || lastError;
  node.classList.toggle("stale", Boolean(stale));
  if (!lastGood) {
    node.textContent = `Not loaded yet${lastError ? `: ${lastError}` : ""}`;
  } else if (stale) {
    const seconds = Math.round(age / 1000);
    node.textContent = `Stale: last updated ${seconds} s ago${lastError ? ` (${lastError})` : ""}`;
  } else {
    node.textContent = `Updated ${new Date(lastGood).toLocaleTimeString()}`;
  }
}

async function loadClouds() {
  const answer = await api("GET", "/cloud");
  const select = $("history-cloud");
  select.replaceChildren(...answer.served_cloud.map((cloud) => el("option", cloud.name)));
}

// -- views ---------------------------------------------------------------------------

async function showClouds() {
  const answer = await api("GET", "/health?deep=1");
  $("clouds-rows").replaceChildren(
    ...answer.clouds.map((cloud) => {
      const tr = row([
        cloud.name,
        cloud.reachable ? "yes" : "no",
        cloud.latency_ms === null || cloud.latency_ms === undefined ? "-" : `${cloud.latency_ms} ms`,
        cloud.circuit || "-",
        cloud.message || "",
      ]);
      if (!cloud.reachable || cloud.circuit === "open") tr.classList.add("failing");
      return tr;
    }),
  );
}

async function showPools() {
  const answer = await api("GET", "/pools");
  const blocks = [];
  for (const pool of answer.pools) {
    const block = el("article", null, { "aria-label": `Pool ${pool.name}` });
    const short = pool.free < pool.target.free;
    // Booting VMs that failed their last ready check: running, but not answering yet.
    const unready = pool.unready ? `; ${pool.unready} booting not answering their ready check` : "";
    // VMs made from a template the pool no longer has: being renewed.
    const outdated = pool.outdated ? `; ${pool.outdated} outdated` : "";
    // What an admin's override holds back: no creations, or the pool being emptied.
    const held = pool.draining ? "; draining" : pool.paused ? "; paused" : "";
    const title = el("h3", `${pool.name}: ${pool.free} free of ${pool.target.free} wanted (${pool.target.because}), at most ${pool.max_total}${held}${unready}${outdated}`);
    if (short) title.classList.add("short");
    block.append(title);
    const table = el("table", null, { "aria-label": `Pool ${pool.name} by cloud` });
    const head = el("tr");
    for (const name of ["Cloud", "Booting", "Free", "Reserved", "Assigned", "Faulty", "Last error"]) {
      head.append(el("th", name, { scope: "col" }));
    }
    table.append(el("thead"), el("tbody"));
    table.tHead.append(head);
    const total = row(["all", pool.booting, pool.free, pool.reserved, pool.assigned, pool.faulty, ""]);
    total.dataset.pool = pool.name;
    total.dataset.cloud = "";
    table.tBodies[0].append(total);
    for (const entry of pool.clouds) {
      const error = entry.last_error ? `${entry.last_error.time} ${entry.last_error.message}` : "";
      const tr = row([
        entry.cloud, entry.booting, entry.free, entry.reserved, entry.assigned, entry.faulty, error,
      ]);
      tr.dataset.pool = pool.name;
      tr.dataset.cloud = entry.cloud;
      if (entry.last_error) tr.classList.add("failing");
      table.tBodies[0].append(tr);
    }
    block.append(table);
    block.append(chart(pool, await levelsOf(pool.name)));
    blocks.push(block);
  }
  if (!blocks.length) blocks.push(el("p", "No warm pools are configured."));
  $("pools-list").replaceChildren(...blocks);
}

// Each pool's levels as far as fetched: a refresh asks only for the newer ones.
const levelsKnown = new Map();
const LEVELS_KEPT = 1440;

async function levelsOf(name) {
  const known = levelsKnown.get(name) || [];
  const after = known.length ? `?after=${known[known.length - 1].id}` : "";
  const answer = await api("GET", `/pools/${encodeURIComponent(name)}/levels${after}`);
  const levels = known.concat(answer.levels).slice(-LEVELS_KEPT);
  levelsKnown.set(name, levels);
  return levels;
}

function chart(pool, levels) {
  const width = 600;
  const height = 120;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("role", "img");
  svg.setAttribute("class", "chart");
  const last = levels[levels.length - 1];
  const described = last
    ? `Levels of pool ${pool.name} over ${levels.length} passes; now ${STATES.map((s) => `${last[s]} ${s}`).join(", ")}`
    : `No levels of pool ${pool.name} yet`;
  svg.setAttribute("aria-label", described);
  const top = Math.max(pool.max_total, 1, ...levels.map((l) => Math.max(...STATES.map((s) => l[s]))));
  const x = (index) => (levels.length < 2 ? width : (index * width) / (levels.length - 1));
  const y = (value) => height - 4 - (value * (height - 8)) / top;
  const wanted = document.createElementNS(ns, "line");
  for (const [name, value] of Object.entries({ x1: 0, x2: width, y1: y(pool.target.free), y2: y(pool.target.free) })) {
    wanted.setAttribute(name, String(value));
  }
  wanted.setAttribute("stroke", "#888");
  wanted.setAttribute("stroke-dasharray", "4 4");
  svg.append(wanted);
  for (const state of STATES) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", levels.map((level, index) => `${x(index)},${y(level[state])}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[state]);
    line.setAttribute("stroke-width", "2");
    svg.append(line);
  }
  const figure = el("figure");
  const caption = el("figcaption", null, { class: "legend" });
  for (const state of STATES) caption.append(el("span", state, { class: state }));
  caption.append(el("span", "dashed: the target now"));
  figure.append(svg, caption);
  return figure;
}

function leaseLeft(expiresAt) {
  if (!expiresAt) return "no lease";
  const seconds = Math.round((Date.parse(expiresAt) - Date.now()) / 1000);
  if (seconds <= 0) return "ended";
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

async function showAssignments() {
  const clouds = Array.from($("history-cloud").options).map((option) => option.value);
  const answers = await Promise.all(clouds.map((cloud) => api("GET", `/vm/status/${encodeURIComponent(cloud)}`)));
  const rows = [];
  answers.forEach((answer, index) => {
    for (const vm of answer.nodes) {
      if (vm.status !== 2) continue; // ASSIGNED
      const cells = [clouds[index], vm.id_vm, vm.hostname, vm.user, vm.recipe, leaseLeft(vm.expires_at)];
      const tr = row(cells);
      tr.dataset.vm = `${clouds[index]}/${vm.id_vm}`;
      if (can(CHANGE_ROLES)) tr.append(cell(actions(clouds[index], vm)));
      rows.push(tr);
    }
  });
  $("assignments-rows").replaceChildren(...rows);
}

function actions(cloud, vm) {
  const span = el("span");
  const extend = el("button", "Extend", { type: "button", "aria-label": `Extend the lease of ${vm.hostname}` });
  extend.addEventListener("click", () => extendVm(cloud, vm));
  const release = el("button", "Release", { type: "button", "aria-label": `Release ${vm.hostname}` });
  release.addEventListener("click", () => releaseVm(cloud, vm));
  span.append(extend, " ", release);
  return span;
}

async function change(what, method, path, body) {
  const message = $("assignments-message");
  try {
    const answer = await api(method, path, body);
    message.textContent = answer.result || `${what}: done`;
  } catch (error) {
    if (!(error instanceof SessionEnded)) message.textContent = `${what} refused: ${error.message}`;
  }
  await refresh();
}

async function extendVm(cloud, vm) {
  const text = window.prompt(`Lease of ${vm.hostname} from now, in seconds`, "3600");
  if (text === null) return;
  await change("Extend", "PUT", `/vm/action/extend/${encodeURIComponent(cloud)}`, { node: vm.id_vm, lease: Number(text) });
}

async function releaseVm(cloud, vm) {
  if (!window.confirm(`Release ${vm.hostname} (${vm.id_vm}) of ${vm.user}?`)) return;
  await change("Release", "PUT", `/vm/action/release/${encodeURIComponent(cloud)}`, { node: vm.id_vm });
}

// The requests waiting in line (an admin sees everyone's, anyone else their own): each with
// its place among those wanting its types, and Cancel for its asker or an admin.
async function showRequests() {
  const answer = await api("GET", "/requests?state=pending");
  const rows = answer.requests.map((request) => {
    const asked = Object.entries(request.asked).map(([type, count]) => `${count} ${type}`).join(", ");
    const wait = request.estimated_wait_s === null ? "unknown" : `${request.estimated_wait_s} s`;
    const cells = [String(request.id), request.user, asked, String(request.priority), String(request.position), wait, leaseLeft(request.expires_at)];
    const tr = row(cells);
    tr.dataset.request = String(request.id);
    if (can(CHANGE_ROLES)) {
      const cancel = el("button", "Cancel", { type: "button", "aria-label": `Cancel request ${request.id}` });
      cancel.addEventListener("click", () => cancelRequest(request));
      tr.append(cell(cancel));
    }
    return tr;
  });
  $("requests-rows").replaceChildren(...rows);
}

async function cancelRequest(request) {
  if (!window.confirm(`Cancel request ${request.id} of ${request.user}?`)) return;
  const message = $("requests-message");
  try {
    await api("DELETE", `/requests/${request.id}`);
    message.textContent = `Request ${request.id} cancelled`;
  } catch (error) {
    if (!(error instanceof SessionEnded)) message.textContent = `Cancel refused: ${error.message}`;
  }
  await refresh();
}

async function assignByType(event) {
  event.preventDefault();
  const body = { vm_type: $("assign-vm-type").value, user: $("assign-user").value };
  if ($("assign-lease").value) body.lease = Number($("assign-lease").value);
  const message = $("assign-message");
  try {
    const answer = await api("PUT", "/vm/action/assign", body);
    message.textContent = `${answer.result} on ${answer.cloud} (${answer.hostname})`;
  } catch (error) {
    if (!(error instanceof SessionEnded)) message.textContent = `Assign refused: ${error.message}`;
  }
  await refresh();
}

async function showHistory() {
  const cloud = $("history-cloud").value;
  if (!cloud) return;
  const query = new URLSearchParams({ limit: "20" });
  if ($("history-user").value) query.set("user", $("history-user").value);
  if ($("history-action").value) query.set("action", $("history-action").value);
  if (history.before) query.set("before", String(history.before));
  const answer = await api("GET", `/vm/history/${encodeURIComponent(cloud)}?${query}`);
  history.next = answer.next_before;
  $("history-older").disabled = !answer.next_before;
  $("history-rows").replaceChildren(
    ...answer.history.map((entry) =>
      row([entry.time, entry.action, entry.hostname || entry.id_vm, entry.user, entry.caller, entry.outcome, entry.message]),
    ),
  );
}

// -- quotas --------------------------------------------------------------------------

// A number of hours or VM-hours as a person reads it: at most two decimals.
function decimal(value) {
  return String(Math.round(value * 100) / 100);
}

// Seconds as days, hours, minutes and seconds: 5400 is "1 h 30 min".
function duration(seconds) {
  let rest = Math.round(seconds);
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]]) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)} ${unit}`);
      rest %= size;
    }
  }
  return parts.join(" ") || "0 s";
}

// Whose a rule is: "user ada", "role agent", "default".
function whose(rule) {
  return rule.scope === "default" ? "default" : `${rule.scope} ${rule.name}`;
}

// How the API's messages name a rule: "role agent", "user ada for pool web", "default".
function ruleName(rule) {
  return rule.pool === null ? whose(rule) : `${whose(rule)} for pool ${rule.pool}`;
}

// The rules a pool's limits come from: one name when one rule sets them all, else each
// limit with its rule's.
function rulesOf(entry) {
  const named = [
    ["VMs", entry.max_vms.rule],
    ["VM-hours", entry.max_vm_hours.rule],
    ["lease", entry.max_lease.rule],
  ].filter(([, rule]) => rule);
  const names = new Set(named.map(([, rule]) => ruleName(rule)));
  if (names.size === 0) return "none";
  if (names.size === 1) return [...names][0];
  return named.map(([limit, rule]) => `${limit}: ${ruleName(rule)}`).join("; ");
}

// A limit of the caller's standing: "1 / 3, 2 left", "0.5 / 10 in 24 h, 9.5 left".
function usage(limit, show, period) {
  const within = period ? ` in ${decimal(period / 3600)} h` : "";
  if (limit.limit === null) return `${show(limit.used)} / ${NO_LIMIT}`;
  return `${show(limit.used)} / ${show(limit.limit)}${within}, ${show(limit.left)} left`;
}

async function showMyQuota() {
  if (!can(CHANGE_ROLES)) return;
  const { quota } = await api("GET", "/quotas/me");
  $("my-quota-table").hidden = !quota.enabled;
  if (!quota.enabled) {
    $("my-quota-summary").textContent =
      "Quotas do not apply: this dispatcher's bookkeeping does not keep what they count.";
    $("my-quota-rows").replaceChildren();
    return;
  }
  $("my-quota-summary").textContent = `What ${quota.user} may hold, in any pool and in each pool.`;
  $("my-quota-rows").replaceChildren(
    ...quota.pools.map((entry) => {
      const tr = row([
        entry.pool === null ? "any pool" : entry.pool,
        entry.allowed ? "yes" : "no",
        usage(entry.max_vms, String),
        usage(entry.max_vm_hours, decimal, entry.max_vm_hours.period),
        entry.max_lease.limit === null ? NO_LIMIT : duration(entry.max_lease.limit),
        rulesOf(entry),
      ]);
      if (!entry.allowed) tr.cells[1].classList.add("short");
      if (entry.max_vms.left === 0) tr.cells[2].classList.add("short");
      if (entry.max_vm_hours.left === 0) tr.cells[3].classList.add("short");
      return tr;
    }),
  );
}

// A limit a rule sets, as shown: "—" where the rule leaves it to the next rule, "no
// limit" where it lifts it.
function ruleLimit(rule, key, show) {
  if (!Object.hasOwn(rule, key)) return "—";
  return rule[key] === null ? NO_LIMIT : show(rule[key]);
}

function vmCount(count) {
  return `${count} VM${count === 1 ? "" : "s"}`;
}

function quotaRuleRow(rule) {
  // A rule's max_vm_hours counts in its own period, a day where it gives none.
  const period = decimal((rule.period ?? 86400) / 3600);
  const used = rule.used
    ? `${vmCount(rule.used.vms)}, ${decimal(rule.used.vm_hours)} VM-hours in ${decimal(rule.used.period / 3600)} h`
    : "—";
  return row([
    whose(rule),
    rule.pool === null ? "any" : rule.pool,
    ruleLimit(rule, "max_vms", String),
    ruleLimit(rule, "max_vm_hours", (value) => `${decimal(value)} in ${period} h`),
    ruleLimit(rule, "max_lease", duration),
    ruleLimit(rule, "pools", (pools) => pools.join(", ") || "none"),
    rule.source,
    used,
    rule.updated_by ? `${rule.updated_by}, ${rule.updated_at.replace(/\.\d+/, "")}` : "—",
  ]);
}

async function showQuotaRules() {
  if (!can(["admin"])) return; // GET /quotas refuses everyone else
  const answer = await api("GET", "/quotas");
  $("quotas-rows").replaceChildren(...answer.rules.map(quotaRuleRow));
  $("quotas-empty").hidden = answer.rules.length > 0;
}

// -- usage ---------------------------------------------------------------------------

// The month's figures move slowly and each report sums every span of the month: read
// again once a minute, not at every refresh.
const USAGE_REFRESH_MS = 60000;
let usageRead = 0;
let usagePeriod = null; // {from, to} of the report shown

// VM-seconds as hours, one decimal: 5400 is "1.5".
function hours(seconds) {
  return (seconds / 3600).toFixed(1);
}

// A cost as the API rounds it, to the cent: 2.1 is "2.10".
function money(value) {
  return value.toFixed(2);
}

// A moment of the API (ISO 8601, UTC) to the minute: "2026-12-01 00:00".
function minute(iso) {
  return iso.slice(0, 16).replace("T", " ");
}

function usagePoolRow(name, figures) {
  return row([
    name,
    hours(figures.assigned_seconds),
    money(figures.assigned_cost),
    hours(figures.idle_seconds),
    money(figures.idle_cost),
    money(figures.faulty_cost),
    money(figures.cost),
  ]);
}

function usageUserRow(name, figures) {
  return row([name, hours(figures.assigned_seconds), money(figures.cost), figures.assigns, figures.peak_held]);
}

// Nothing of a user's usage is left for whoever signs in next, who reads their own at once.
function forgetUsage() {
  usageRead = 0;
  usagePeriod = null;
  for (const id of ["usage-period", "usage-message"]) $(id).textContent = "";
  for (const id of ["usage-pools-rows", "usage-pools-total", "usage-users-rows", "usage-users-total"]) {
    $(id).replaceChildren();
  }
}

// This month so far (the API's default period), by pool and by user: the second report
// asks for the first one's period, so that both tables count the same seconds.
async function showUsage() {
  if (!can(CHANGE_ROLES)) return; // GET /usage refuses everyone else
  if (Date.now() - usageRead < USAGE_REFRESH_MS) return;
  const message = $("usage-message");
  const asker = me;
  let pools;
  let users;
  try {
    ({ usage: pools } = await api("GET", "/usage?group_by=pool"));
    const period = new URLSearchParams({ from: pools.from, to: pools.to, group_by: "user" });
    ({ usage: users } = await api("GET", `/usage?${period}`));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 400 || me !== asker) throw error;
    // A bookkeeping that keeps no spans (Cistern): no report, and no use asking again.
    usageRead = Date.now();
    usagePeriod = null;
    $("usage-tables").hidden = true;
    $("usage-period").textContent = "";
    message.textContent = `No usage report: ${error.message}`;
    return;
  }
  if (me !== asker) return; // signed out meanwhile: not for whoever signs in next
  usageRead = Date.now();
  usagePeriod = { from: pools.from, to: pools.to };
  message.textContent = "";
  const whose = can(["admin"]) ? "everyone's VMs" : "the VMs you assigned";
  $("usage-period").textContent =
    `This month so far, ${minute(pools.from)} to ${minute(pools.to)} UTC: ${whose}; costs in the units of the PRICES setting.`;
  $("usage-pools-rows").replaceChildren(
    ...pools.groups.map((group) => usagePoolRow(group.pool === null ? "(no pool)" : group.pool, group)),
  );
  $("usage-pools-total").replaceChildren(usagePoolRow("Total", pools.total));
  $("usage-users-rows").replaceChildren(
    ...users.groups.map((group) => usageUserRow(group.user === null ? "(nobody)" : group.user, group)),
  );
  $("usage-users-total").replaceChildren(usageUserRow("Total", users.total));
  $("usage-tables").hidden = false;
}

// The period shown as CSV, by pool and user: fetched with the token (which never goes in
// a URL) and handed to the browser as a file.
async function downloadUsage() {
  if (usagePeriod === null) return;
  const message = $("usage-message");
  const query = new URLSearchParams({ ...usagePeriod, group_by: "pool,user", format: "csv" });
  try {
    const response = await call("GET", `/usage?${query}`, undefined, "text/csv");
    const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const file = named ? named[1] : "usage.csv";
    const link = el("a", null, { href: URL.createObjectURL(await response.blob()), download: file });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), USAGE_REFRESH_MS);
    message.textContent = `Downloaded ${file}`;
  } catch (error) {
    if (!(error instanceof SessionEnded)) message.textContent = `Download refused: ${error.message}`;
  }
}

// -- the reconcile (admins) ----------------------------------------------------------

function showReport(answer) {
  const parts = [];
  for (const kind of ["orphans", "ghosts", "mismatches"]) {
    parts.push(el("h3", `${kind}: ${answer[kind].length}`));
    if (!answer[kind].length) continue;
    const table = el("table", null, { "aria-label": kind });
    const head = el("tr");
    for (const name of ["Cloud", "VM", "Host", "Books", "Cloud state", "Pool", "Fix"]) head.append(el("th", name, { scope: "col" }));
    table.append(head);
    for (const item of answer[kind]) {
      table.append(row([item.cloud, item.id_vm, item.hostname, item.ledger_state, item.cloud_state, item.pool, item.fix]));
    }
    parts.push(table);
  }
  for (const outcome of answer.clouds.filter((entry) => entry.status !== "ok")) {
    parts.push(el("p", `${outcome.name}: ${outcome.message}`, { class: "failing" }));
  }
  $("reconcile-result").replaceChildren(...parts);
}

async function reconcile(method, body, what) {
  const message = $("reconcile-message");
  message.textContent = `${what}…`;
  try {
    const answer = await api(method, "/reconcile", body);
    showReport(answer);
    message.textContent = `${what}: done`;
    return true;
  } catch (error) {
    if (!(error instanceof SessionEnded)) message.textContent = `${what} refused: ${error.message}`;
    return false;
  }
}

async function dryRun() {
  dryRunDone = await reconcile("POST", { destroy_orphans: $("reconcile-destroy").checked }, "Dry run");
  $("reconcile-apply").disabled = !dryRunDone;
}

async function apply() {
  if (!dryRunDone || !window.confirm("Apply the fixes the dry run shows?")) return;
  await reconcile("POST", { apply: true, destroy_orphans: $("reconcile-destroy").checked }, "Applied");
  dryRunDone = false;
  $("reconcile-apply").disabled = true;
}

// -- wiring --------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOutClicked);
$("assign-form").addEventListener("submit", assignByType);
$("history-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  history = { before: null, next: null };
  showHistory().catch(() => {});
});
$("history-newest").addEventListener("click", () => {
  history = { before: null, next: null };
  showHistory().catch(() => {});
});
$("history-older").addEventListener("click", () => {
  history.before = history.next;
  showHistory().catch(() => {});
});
$("usage-csv").addEventListener("click", downloadUsage);
$("reconcile-report").addEventListener("click", () => reconcile("GET", undefined, "Report"));
$("reconcile-dry-run").addEventListener("click", dryRun);
$("reconcile-apply").addEventListener("click", apply);
$("reconcile-destroy").addEventListener("change", () => {
  dryRunDone = false;
  $("reconcile-apply").disabled = true;
});
setInterval(() => me && showFreshness(), 1000);

if (sessionStorage.getItem(TOKEN)) {
  start().catch((error) => {
    if (!(error instanceof SessionEnded)) signOut(error.message);
  });
} else {
  $("username").focus();
}
