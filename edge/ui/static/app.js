// The officer's kiosk screen. Every action is a call to the daemon's local API; the page
// keeps only the session token and the KPM id in memory (no faces, no embeddings).
"use strict";

// Every text the officer reads comes from i18n.json in the screen's language: refusals by
// their reason_code, failed checks by their decision, errors by their error_key. The
// daemon's English `reason`/`error` is never shown (it stays in the API and the logs).
const S = { lang: "id", texts: {}, token: null, officer: null, kpm: null, maxAttempts: 3,
  screen: "signin", timers: [], msg: null, result: null, signinError: null, challenging: false };

const $ = (id) => document.getElementById(id);
const has = (key) => Boolean(S.texts[S.lang] && S.texts[S.lang][key]);
const t = (key) => (S.texts[S.lang] && S.texts[S.lang][key]) || key;
// a text with {name} fields filled in
const fmt = (key, vars) => t(key).replace(/\{(\w+)\}/g, (m, n) => (vars[n] === undefined || vars[n] === null ? "–" : String(vars[n])));
// "not on the list" -> "rc_not_on_the_list" (edge/eligibility.py's codes; tests check them all)
const reasonKey = (code) => "rc_" + String(code).replace(/ /g, "_");
const num = (x) => (typeof x === "number" ? x.toFixed(3) : "–");

async function api(method, path, body) {
  const headers = {};
  if (S.token) headers["Authorization"] = "Bearer " + S.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { code: 0, body: { error_key: "network", error: String(e) } };
  }
  let data = {};
  try { data = await resp.json(); } catch (e) { data = {}; }
  if (resp.status === 401 && data.error_key === "signed_out" && S.token) { signedOut(); }
  return { code: resp.status, body: data };
}

function translate() {
  document.documentElement.lang = S.lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  const g = $("guidance");
  g.textContent = t("g_" + g.dataset.code);
  if (S.result) renderResult();
  if (S.msg) say(S.msg.render, S.msg.isError);
}

function show(name) {
  S.screen = name;
  document.querySelectorAll(".screen").forEach((el) => { el.hidden = el.id !== "screen-" + name; });
  document.body.dataset.screen = name;
  say("", false);
  stopPreview();
  if (name === "capture") startPreview($("preview"), true);
  if (name === "identify") startPreview($("scan-preview"), false);
}

// render: a function giving the text in the current language (called again when the
// language changes), or "" to clear
function say(render, isError) {
  const m = $("message");
  const text = typeof render === "function" ? render() : render;
  S.msg = text ? { render, isError } : null;
  m.textContent = text;
  m.className = "message" + (isError ? " error" : "");
  m.hidden = !text;
}

function errorText(r) {
  const body = r.body;
  const key = "e_" + body.error_key;
  let text = body.error_key && has(key) ? t(key) : fmt("e_other", { code: r.code });
  if (body.attempts_left !== undefined && body.attempts_left !== null) text += " (" + t("attempts_left") + ": " + body.attempts_left + ")";
  if (body.locked_for_s) text += " (" + Math.round(body.locked_for_s) + " " + t("seconds") + ")";
  return text;
}
const sayError = (r) => say(() => errorText(r), true);

// a refusal before any capture (not_eligible, already_served), from its reason_code
// "2026-10-01T00:00:00Z" -> "2026-10-01 00:00 UTC"
const utc = (iso) => (iso ? String(iso).replace(/^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(:\d\d(\.\d+)?)?Z$/, "$1 $2 UTC") : iso);

function refusalText(k) {
  const key = reasonKey(k.reason_code);
  const vars = { valid_from: utc(k.valid_from), valid_until: utc(k.valid_until), served_at: utc(k.served_at) };
  const why = k.reason_code && has(key) ? fmt(key, vars) : "";
  return t("d_" + k.decision) + (why ? ": " + why : "");
}

// what the officer should do after a failed face check, by decision
function adviceText(a) {
  if (a.decision === "poor_quality" && a.liveness) return t("r_poor_quality_liveness");
  return has("r_" + a.decision) ? t("r_" + a.decision) : "";
}

// the numbers behind a face decision, worded in the screen's language
function detailText(a) {
  const parts = [];
  if (typeof a.score === "number") parts.push(fmt("detail_score", { score: num(a.score), threshold: num(a.threshold) }));
  const lv = a.liveness;
  if (lv && typeof lv.score === "number") {
    parts.push(fmt("detail_liveness", { score: num(lv.score), threshold: num(lv.threshold), live: lv.frames_live, judged: lv.frames_judged }));
  }
  return parts.join("; ");
}

// -- always-visible bar --------------------------------------------------------
async function refreshState() {
  const r = await api("GET", "/v1/ui/state");
  if (r.code !== 200) { $("link").dataset.state = "offline"; $("link").textContent = t("link_offline"); return; }
  const s = r.body;
  S.maxAttempts = s.max_attempts;
  $("link").dataset.state = s.link;
  $("link").textContent = t("link_" + s.link);
  $("offline-banner").hidden = s.link !== "offline";
  $("waiting").textContent = String(s.waiting);
  $("gps").textContent = S.texts[S.lang]["gps_" + s.gps] ? t("gps_" + s.gps) : s.gps;
  $("serving").textContent = s.serving.length
    ? s.serving.map((p) => p.programme.toUpperCase() + " " + p.period).join(", ") : t("serving_none");
  const off = $("signin-unavailable");
  off.hidden = s.signin_available;
  // the daemon's error starts with the file's path: name the file, not the English detail
  const file = s.signin_error ? String(s.signin_error).split(": ")[0] : "";
  off.textContent = s.signin_available ? "" : fmt("signin_unavailable", { file });
  $("signin-btn").disabled = !s.signin_available;
  $("badge-btn").disabled = !s.signin_available;
}

// -- sign-in --------------------------------------------------------------------
function signedIn(body) {
  S.token = body.token;
  S.officer = body;
  $("officer-name").textContent = body.name;
  $("officer-code").textContent = body.officer_id;
  $("officer").hidden = false;
  $("signout").hidden = false;
  $("pin").value = "";
  say("", false);
  toIdentify();
}

function signedOut() {
  S.token = null; S.officer = null; S.kpm = null;
  $("officer-name").textContent = ""; $("officer-code").textContent = "";
  $("officer").hidden = true; $("signout").hidden = true;
  show("signin");
  say(() => t("e_signed_out"), true);
}

async function signIn() {
  const r = await api("POST", "/v1/session", { officer_id: $("officer-id").value.trim(), pin: $("pin").value });
  if (r.code === 200) signedIn(r.body); else { $("pin").value = ""; sayError(r); }
}

async function badge() {
  const r = await api("POST", "/v1/scan", {});
  if (r.code !== 200) { sayError(r); return; }
  const s = await api("POST", "/v1/session", { badge: r.body.code });
  if (s.code === 200) signedIn(s.body); else sayError(s);
}

async function signOut() {
  await api("DELETE", "/v1/session");
  S.token = null;
  signedOut();
  say("", false);
}

// -- identify the KPM -------------------------------------------------------------
function toIdentify() {
  S.kpm = null;
  S.result = null;
  $("kpm-id").value = "";
  show("identify");
}

async function scanCard() {
  say("", false);
  const r = await api("POST", "/v1/scan", {});
  if (r.code !== 200) { sayError(r); return; }
  const code = r.body.code;
  if (!r.body.kpm_id) { say(() => t("e_bad_kpm_id") + " — " + code, true); return; }
  $("kpm-id").value = r.body.kpm_id;
  await check(r.body.kpm_id);
}

async function check(kpmId) {
  say("", false);
  const id = (kpmId || $("kpm-id").value).trim();
  if (!id) { say(() => t("e_bad_kpm_id"), true); return; }
  const r = await api("GET", "/v1/kpm/" + encodeURIComponent(id));
  if (r.code !== 200) { sayError(r); return; }
  const k = r.body;
  if (!k.eligible) { say(() => refusalText(k), true); return; }
  S.kpm = k;
  toCapture();
}

// -- live preview with guidance ---------------------------------------------------------
function toCapture() {
  const k = S.kpm;
  $("capture-kpm").textContent = k.kpm_id;
  $("capture-prog").textContent = (k.programme || "").toUpperCase() + " " + (k.period || "");
  $("capture-attempts").textContent = k.attempts + " / " + k.max_attempts;
  // no "ok" left over from the previous KPM until the detector has seen this frame
  const g = $("guidance"); g.dataset.code = "no_face"; g.textContent = t("g_no_face");
  show("capture");
}

// Live preview (and, on the capture screen, guidance) while a screen shows; the frames
// live only in the <img>, replaced every 0.7 s.
function startPreview(img, withGuidance) {
  const screen = S.screen;
  let loading = false;
  const frame = () => {
    if (loading || S.screen !== screen || !S.token) return;
    loading = true;
    fetch("/v1/preview.jpg", { headers: { Authorization: "Bearer " + S.token } })
      .then((r) => { if (r.status === 401 && S.token) signedOut(); return r.ok ? r.blob() : null; })
      .then((b) => {
        if (b) { const old = img.src; img.src = URL.createObjectURL(b); if (old) URL.revokeObjectURL(old); }
      })
      .catch(() => {}).finally(() => { loading = false; });
  };
  const guide = async () => {
    if (S.screen !== "capture" || S.challenging) return;
    const r = await api("GET", "/v1/guidance");
    if (r.code === 200) { const g = $("guidance"); g.dataset.code = r.body.guidance; g.textContent = t("g_" + r.body.guidance); }
  };
  frame();
  S.timers = [setInterval(frame, 700)];
  if (withGuidance) { guide(); S.timers.push(setInterval(guide, 1200)); }
}

function stopPreview() { S.timers.forEach(clearInterval); S.timers = []; }

async function verify(manualReason) {
  const btn = manualReason ? $("manual-record") : $("verify-btn");
  btn.disabled = true;
  say("", false);
  const body = { kpm_id: S.kpm.kpm_id };
  if (manualReason) body.manual_reason = manualReason;
  const poll = manualReason ? null : setInterval(challengeStep, 300);
  let r;
  try { r = await api("POST", "/v1/verify", body); }
  finally { if (poll) clearInterval(poll); S.challenging = false; }
  btn.disabled = false;
  if (r.code !== 200) {
    if (r.body.manual_allowed) toManual();
    sayError(r);
    return;
  }
  showResult(r.body);
}

// The active liveness challenge ([liveness] challenge = "turn"): while the daemon runs it,
// show the step it asks for (in the screen's language) where the guidance goes.
async function challengeStep() {
  const r = await api("GET", "/v1/progress");
  const c = r.code === 200 ? r.body.challenge : null;
  if (!c) return;
  S.challenging = true;
  const g = $("guidance");
  g.dataset.code = "challenge";
  g.textContent = t("ch_" + c.step) + " (" + Math.max(0, Math.round(c.seconds_left)) + " s)";
}

const FAILED = ["no_match", "spoof", "no_face", "poor_quality"];  // edge/verification.py

function showResult(a) {
  S.kpm.attempts = a.attempts;
  if (a.decision === "spoof") S.kpm.spoof_before = true;
  S.result = a;
  renderResult();
  show("result");
}

function renderResult() {
  const a = S.result;
  $("result-kpm").textContent = a.kpm_id;
  $("result-prog").textContent = (a.programme || "").toUpperCase() + " " + (a.period || "");
  const d = $("decision");
  d.dataset.decision = a.decision;
  d.textContent = t("d_" + a.decision);
  const failed = FAILED.includes(a.decision);
  let advice = "";
  if (failed) advice = adviceText(a);
  else if (a.decision !== "match" && a.decision !== "manual") advice = refusalText(a);
  $("result-reason").textContent = advice;
  $("result-reason").dataset.decision = a.decision;
  $("result-detail").textContent = failed ? detailText(a) : "";
  const left = Math.max(0, a.max_attempts - a.attempts);
  $("result-attempts").textContent = failed ? t("attempts") + ": " + a.attempts + " / " + a.max_attempts + " (" + left + " " + t("attempts_left") + ")" : "";
  $("retry-btn").hidden = !failed || a.manual_allowed;
  $("manual-btn").hidden = !(failed && a.manual_allowed);
}

function toManual() {
  $("manual-kpm").textContent = S.kpm.kpm_id;
  $("manual-reason").value = "";
  // the daemon records this handover as "override after spoof": say so before it happens
  $("manual-spoof").hidden = !S.kpm.spoof_before;
  show("manual");
}

function recordManual() {
  const reason = $("manual-reason").value.trim();
  if (reason.length < 5) { say(() => t("e_bad_reason"), true); return; }
  verify(reason);
}

async function boot() {
  const r = await fetch("/ui/i18n.json");
  S.texts = await r.json();
  const st = await api("GET", "/v1/ui/state");
  if (st.code === 200 && st.body.language) S.lang = st.body.language;
  translate();
  show("signin");
  $("signin-btn").onclick = signIn;
  $("pin").addEventListener("keydown", (e) => { if (e.key === "Enter") signIn(); });
  $("badge-btn").onclick = badge;
  $("signout").onclick = signOut;
  $("lang").onclick = () => { S.lang = S.lang === "id" ? "en" : "id"; translate(); refreshState(); };
  $("scan-btn").onclick = scanCard;
  $("check-btn").onclick = () => check();
  $("kpm-id").addEventListener("keydown", (e) => { if (e.key === "Enter") check(); });
  $("verify-btn").onclick = () => verify(null);
  $("capture-back").onclick = toIdentify;
  $("retry-btn").onclick = toCapture;
  $("manual-btn").onclick = toManual;
  $("manual-record").onclick = recordManual;
  $("manual-back").onclick = () => showResultBack();
  $("next-btn").onclick = toIdentify;
  await refreshState();
  setInterval(refreshState, 1000);
  document.body.dataset.ready = "1";
}

function showResultBack() { show("result"); }

boot();
