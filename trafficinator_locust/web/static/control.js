// The trafficinator control page: targets (config + live status), learning a target's traffic model from
// another target's reports, validation, ingestion check, presets.
// Plain JS, no dependencies; every value is put in the page as text (never as HTML).
"use strict";

const REFRESH_MS = 2000;
const $ = (selector) => document.querySelector(selector);
let editing = null; // name of the target in the editor, or "" for a new one
let configTargets = [];

async function api(path, options = {}) {
  const response = await fetch("../api/" + path, {
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    ...options,
  });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    const error = new Error(body.error || response.statusText);
    error.problems = body.problems || [];
    throw error;
  }
  return body;
}

const send = (method, path, body) => api(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
const named = (name) => encodeURIComponent(name);

function cell(row, column, text, className) {
  const td = row.insertCell();
  td.dataset.col = column;
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (className) td.className = className;
  return td;
}

function button(parent, label, action, handler) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.action = action;
  b.addEventListener("click", handler);
  parent.appendChild(b);
  return b;
}

function say(text, isError = false, problems = []) {
  const box = $("#message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  const list = $("#problems");
  list.replaceChildren(...problems.map((p) => {
    const li = document.createElement("li");
    li.textContent = `${p.path}: ${p.message}`;
    return li;
  }));
}

function describe(applied) {
  if (!applied) return "";
  const parts = [];
  if (applied.live && applied.live.length) parts.push("now: " + applied.live.join("; "));
  if (applied.next_start && applied.next_start.length) parts.push("at the next test start: " + applied.next_start.join("; "));
  if (applied.note) parts.push(applied.note);
  if (applied.saved) parts.push(`saved to ${applied.saved.path} (backup ${applied.saved.backup})`);
  return parts.join("\n");
}

async function act(work, done) {
  try {
    const result = await work();
    say(done(result) || "done");
    await refresh();
  } catch (error) {
    say(error.message, true, error.problems || []);
  }
}

const perMinute = (rate) => (rate === null || rate === undefined ? "-" : (rate * 60).toFixed(1));

// -- targets

function renderTargets(targets, status) {
  const live = Object.fromEntries((status.targets || []).map((t) => [t.name, t]));
  const body = $("#targets tbody");
  body.replaceChildren();
  for (const target of targets) {
    const s = live[target.name] || {};
    const row = body.insertRow();
    row.dataset.target = target.name;
    const enabled = target.enabled !== false;
    if (!enabled) row.className = "disabled";
    cell(row, "name", target.name);
    cell(row, "state", s.state || (enabled ? "-" : "disabled"), "state-" + (s.state || ""));
    cell(row, "health", s.health, "health-" + (s.health || ""));
    cell(row, "visits", `${s.visits_today ?? 0} / ${s.cap_today ?? "-"}`, "num");
    cell(row, "rate", `${perMinute(s.current_rate)} (${perMinute(s.expected_rate)})`, "num");
    cell(row, "requests", s.requests ?? 0, "num");
    cell(row, "failpct", s.fail_pct ?? 0, "num");
    cell(row, "p95", s.p95_ms ?? 0, "num");
    const effective = target.effective || {};
    cell(row, "weight", effective.weight === undefined ? target.weight : `${effective.weight} (${(100 * (effective.weight_share || 0)).toFixed(0)}%)`, "num");
    cell(row, "vpd", effective.visits_per_day ?? target.visits_per_day, "num");
    cell(row, "timezone", effective.timezone || target.timezone);
    cell(row, "token", target.token_auth ? (target.token_env ? `set (\${${target.token_env}})` : "set") : "none");
    cell(row, "error", s.last_error);
    const actions = cell(row, "actions", "");
    button(actions, "Edit", "edit", () => openEditor(target));
    button(actions, enabled ? "Disable" : "Enable", "toggle", () =>
      act(() => send("PATCH", "targets/" + named(target.name), { enabled: !enabled }), (r) => describe(r.applied)));
    button(actions, "Validate", "validate", () => validate(target.name));
    button(actions, "Learn", "learn", () => openLearn(target));
    button(actions, "Delete", "delete", () => {
      if (confirm(`Remove target ${target.name}?`)) act(() => send("DELETE", "targets/" + named(target.name)), (r) => describe(r.applied));
    });
  }
}

function openEditor(target) {
  editing = target ? target.name : "";
  const form = $("#target-form");
  form.reset();
  $("#editor-title").textContent = target ? `Edit ${target.name}` : "Add a target";
  for (const field of ["name", "url", "site_id", "weight", "visits_per_day", "timezone"]) {
    form.elements[field].value = target && target[field] !== undefined && target[field] !== null ? target[field] : "";
  }
  form.elements.enabled.checked = !target || target.enabled !== false;
  form.elements.token_auth.placeholder = target && target.token_auth ? "unchanged (set)" : "${MATOMO_TOKEN} or the token";
  $("#editor").hidden = false;
  form.elements.name.focus();
}

function formTarget(form, isNew) {
  const numbers = new Set(["site_id", "weight", "visits_per_day"]);
  const target = {};
  for (const field of ["name", "url", "site_id", "weight", "visits_per_day", "timezone"]) {
    const text = form.elements[field].value.trim();
    if (text === "") {
      if (!isNew) target[field] = null; // PATCH: null removes the key (defaults apply)
    } else {
      target[field] = numbers.has(field) ? Number(text) : text;
    }
  }
  target.enabled = form.elements.enabled.checked;
  const token = form.elements.token_auth.value;
  if (token) target.token_auth = token;
  return target;
}

function submitEditor(event) {
  event.preventDefault();
  const form = $("#target-form");
  const isNew = editing === "";
  const query = $("#save-too").checked ? "?save=1" : "";
  const target = formTarget(form, isNew);
  act(
    () => (isNew ? send("POST", "targets" + query, target) : send("PATCH", "targets/" + named(editing) + query, target)),
    (result) => {
      $("#editor").hidden = true;
      editing = null;
      return describe(result.applied) || "applied";
    },
  );
}

// -- learning a traffic model from another target (POST targets/<name>/learn: a preview; applying is the
// PATCH of the target, saving the preset route: the config is written one way only)

let learning = null; // {target, preview} of the learn panel

const isoDay = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;

function openLearn(target) {
  learning = { target: target.name, preview: null };
  $("#learn-title").textContent = `Learn a traffic model for ${target.name} from another target`;
  const select = $("#learn-source");
  const others = configTargets.filter((t) => t.name !== target.name);
  select.replaceChildren(...[...others, target].map((t) => {
    const option = document.createElement("option");
    option.value = t.name;
    option.textContent = t.name + (t.token_auth || t.report_token_auth ? "" : " (no token)");
    return option;
  }));
  const to = new Date();
  to.setDate(to.getDate() - 1); // the last 30 days up to yesterday
  const from = new Date(to);
  from.setDate(from.getDate() - 29);
  $("#learn-to").value = isoDay(to);
  $("#learn-from").value = isoDay(from);
  $("#learn-preview-panel").hidden = true;
  $("#learn-message").textContent = "";
  $("#learn").hidden = false;
  $("#learn").scrollIntoView();
  select.focus();
}

// Messages of the learn panel: beside it (the page's message line is far above) and in the message line.
function learnSay(text, isError = false, problems = []) {
  say(text, isError, problems);
  const box = $("#learn-message");
  box.textContent = text;
  box.className = isError ? "error" : "";
}

async function learnAct(work, done) {
  try {
    learnSay(done(await work()));
    await refresh();
  } catch (error) {
    learnSay(error.message, true, error.problems || []);
  }
}

function learnRequest() {
  return {
    from_target: $("#learn-source").value,
    from: $("#learn-from").value,
    to: $("#learn-to").value,
    top: Number($("#learn-top").value),
    anonymize_urls: $("#learn-anonymize").checked,
  };
}

function showPreview(preview) {
  learning.preview = preview;
  $("#learn-summary").textContent =
    `${preview.target}: learned from ${preview.from_target}, ${preview.from} to ${preview.to} (preview, nothing changed)`;
  $("#learn-yaml").textContent = preview.yaml;
  $("#learn-notes").replaceChildren(...preview.notes.map((note) => {
    const li = document.createElement("li");
    li.textContent = note;
    return li;
  }));
  const keys = preview.target_keys || {};
  $("#learn-target-keys-text").textContent = keys.visits_per_day === undefined ? "none learned" : `${keys.visits_per_day} visits/day`;
  $("#learn-target-keys").checked = false;
  $("#learn-preset-name").value = `${preview.target} like ${preview.from_target}`;
  $("#learn-preview-panel").hidden = false;
}

async function previewLearn(event) {
  event.preventDefault();
  const name = learning.target;
  learnSay(`reading the reports of ${$("#learn-source").value}...`);
  $("#learn-preview").disabled = true;
  try {
    showPreview(await send("POST", `targets/${named(name)}/learn`, learnRequest()));
    learnSay(`learned a traffic model for ${name}: see the preview`);
  } catch (error) {
    $("#learn-preview-panel").hidden = true;
    learnSay(error.message, true, error.problems || []);
  } finally {
    $("#learn-preview").disabled = false;
  }
}

// The learned keys for the target: its traffic, and visits/day and profile when asked.
function learnedKeys(preview) {
  return { traffic: preview.model, ...($("#learn-target-keys").checked ? preview.target_keys : {}) };
}

function applyLearned() {
  const preview = learning && learning.preview;
  if (!preview) return;
  learnAct(() => send("PATCH", "targets/" + named(preview.target), learnedKeys(preview)),
    (r) => `applied the learned model to ${preview.target}\n${describe(r.applied)}`);
}

async function saveLearnedPreset() {
  const preview = learning && learning.preview;
  if (!preview) return;
  const name = $("#learn-preset-name").value.trim();
  if (!name) return learnSay("give the preset a name", true);
  const config = structuredClone(preview.preset_config);
  const entry = config.targets.find((t) => String(t.name).toLowerCase() === preview.target.toLowerCase());
  Object.assign(entry, learnedKeys(preview));
  const note = (r) => [`saved preset ${name} (${preview.target} learned from ${preview.from_target})`, ...(r.warnings || [])].join("\n");
  try {
    learnSay(note(await send("POST", "presets", { name, config })));
  } catch (error) {
    if (!/exists/.test(error.message) || !confirm(`Replace preset ${name}?`)) return learnSay(error.message, true, error.problems || []);
    return learnAct(() => send("PUT", "presets/" + named(name), { config }), note);
  }
  await refresh();
}

// -- validation

function renderValidation(results) {
  const body = $("#validation tbody");
  body.replaceChildren();
  for (const result of results) {
    const row = body.insertRow();
    row.dataset.target = result.target;
    cell(row, "target", result.target);
    cell(row, "result", result.ok ? "ok" : "FAILED", result.ok ? "good" : "bad");
    cell(row, "steps", result.steps.map((s) => `${s.ok ? "\u2713" : "\u2717"} ${s.name}: ${s.detail}`).join("\n"));
    cell(row, "warnings", result.warnings.join("\n") || "");
    cell(row, "seconds", result.seconds, "num");
  }
}

function validate(target) {
  const body = { probe: $("#probe").checked };
  if (target) body.target = target;
  say(target ? `validating ${target}...` : "validating every target...");
  act(() => send("POST", "validate", body), (result) => {
    renderValidation(result.results);
    return result.ok ? "every target checked passed" : "some target failed: see Validation";
  });
}

// -- ingestion check


const shown = (report, value) => (report.money && typeof value === "number" ? value.toFixed(2) : value); // currency units

// One row per target, day and report, sent beside stored; what fails a whole target or day
// (an error, a failed send, no token) is a row of its own.
function renderVerification(targets) {
  const body = $("#verification tbody");
  body.replaceChildren();
  const statusRow = (target, day, text, className) => {
    const row = body.insertRow();
    row.dataset.target = target.target;
    row.dataset.status = target.status;
    if (day) row.dataset.day = day;
    if (className === "bad") row.className = "bad";
    cell(row, "target", target.target);
    cell(row, "day", day);
    cell(row, "report", null);
    cell(row, "sent", null, "num");
    cell(row, "stored", null, "num");
    cell(row, "result", text, className);
  };
  for (const target of targets) {
    if (target.status === "not verifiable") statusRow(target, null, target.note || "not verifiable", "warn");
    if (target.error) statusRow(target, null, target.error, "bad");
    if (target.failed) statusRow(target, null, `FAILED: ${target.failed}`, "bad");
    for (const day of target.days) {
      if (day.note) statusRow(target, day.day, day.note, "bad");
      for (const report of day.rows) {
        const row = body.insertRow();
        row.dataset.target = target.target;
        row.dataset.day = day.day;
        row.dataset.report = report.report;
        if (!report.ok) row.className = "bad";
        cell(row, "target", target.target);
        cell(row, "day", day.day);
        cell(row, "report", report.label);
        cell(row, "sent", shown(report, report.sent), "num");
        cell(row, "stored", shown(report, report.stored), "num");
        const result = report.ok ? "ok" : report.stored < report.sent ? "SHORT" : "TOO MANY";
        cell(row, "result", result, report.ok ? "good" : "bad");
      }
    }
  }
}

function verified(result) {
  if (!result.ok) return result.problems.join("\n");
  const unverifiable = result.targets.filter((t) => t.status === "not verifiable").map((t) => t.target);
  if (!unverifiable.length) return "every target stored what was sent";
  if (unverifiable.length === result.targets.length) return `nothing checked: no target has a token (${unverifiable.join(", ")})`;
  return `every target checked stored what was sent; not verifiable (no token): ${unverifiable.join(", ")}`;
}

function verify(event) {
  event.preventDefault();
  const body = { report_path: $("#verify-path").value.trim(), threshold: Number($("#verify-threshold").value) };
  say("asking each target what it stored...");
  act(() => send("POST", "verify", body), (result) => {
    renderVerification(result.targets);
    return verified(result);
  });
}

// -- presets

function renderPresets(presets) {
  const body = $("#presets tbody");
  body.replaceChildren();
  for (const preset of presets) {
    const row = body.insertRow();
    row.dataset.preset = preset.name;
    cell(row, "name", preset.name);
    cell(row, "targets", preset.targets.join(", "));
    cell(row, "updated", preset.updated);
    const actions = cell(row, "actions", "");
    button(actions, "Apply", "apply", () =>
      act(() => send("POST", `presets/${named(preset.name)}/apply`), (r) => `applied preset ${preset.name}\n${describe(r.applied)}`));
    button(actions, "Delete", "delete", () => {
      if (confirm(`Delete preset ${preset.name}?`)) act(() => send("DELETE", "presets/" + named(preset.name)), () => `deleted preset ${preset.name}`);
    });
  }
}

async function savePreset(event) {
  event.preventDefault();
  const name = $("#preset-name").value.trim();
  const note = (r) => [`saved preset ${name}`, ...(r.warnings || [])].join("\n");
  try {
    const result = await send("POST", "presets", { name });
    say(note(result));
  } catch (error) {
    if (!/exists/.test(error.message) || !confirm(`Replace preset ${name}?`)) return say(error.message, true, error.problems || []);
    return act(() => send("PUT", "presets/" + named(name), {}), note);
  }
  await refresh();
}

// -- refresh

async function refresh() {
  try {
    const [targets, status, presets] = await Promise.all([api("targets"), api("status"), api("presets")]);
    configTargets = targets.targets;
    $("#runner").textContent = `Locust: ${status.runner}` + (targets.file ? ` \u00b7 config ${targets.file}` : "");
    renderTargets(configTargets, status);
    renderPresets(presets.presets);
  } catch (error) {
    $("#runner").textContent = `cannot reach the API: ${error.message}`;
  }
}

$("#add").addEventListener("click", () => openEditor(null));
$("#cancel").addEventListener("click", () => { $("#editor").hidden = true; editing = null; });
$("#target-form").addEventListener("submit", submitEditor);
$("#validate-all").addEventListener("click", () => validate(null));
$("#save-yaml").addEventListener("click", () => act(() => send("POST", "config/save"), (r) => `saved to ${r.saved.path} (backup ${r.saved.backup})`));
$("#preset-form").addEventListener("submit", savePreset);
$("#verify-form").addEventListener("submit", verify);
$("#learn-form").addEventListener("submit", previewLearn);
$("#learn-cancel").addEventListener("click", () => { $("#learn").hidden = true; learning = null; });
$("#learn-apply").addEventListener("click", applyLearned);
$("#learn-save-preset").addEventListener("click", saveLearnedPreset);
refresh();
setInterval(refresh, REFRESH_MS);
