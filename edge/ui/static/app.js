// The officer's kiosk screen. Every action is a call to the daemon's local API; the page
// keeps only the session token and the KPM id in memory (no faces, no embeddings).
"use strict";

const REASON_KEYS = {
  "not on the list": "e_not_listed", "other programme": "e_other_programme",
  "other period": "e_other_period", "roster expired": "e_roster_expired",
  "roster not yet valid": "e_roster_not_yet_valid", "already served": "e_already_served",
};
// errors whose translation says it all; others get the daemon's detail appended
const SELF_EXPLAINED = ["wrong_pin", "locked", "network", "no_code", "camera_busy", "signed_out",
  "attempts_used", "unknown_badge"];
const S = { lang: "id", texts: {}, token: null, officer: null, kpm: null, maxAttempts: 3,
  screen: "signin", timers: [] };

const $ = (id) => document.getElementById(id);
const t = (key) => (S.texts[S.lang] && S.texts[S.lang][key]) || key;

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
  const d = $("decision");
  if (d.dataset.decision) d.textContent = t("d_" + d.dataset.decision);
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

function say(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = "message" + (isError ? " error" : "");
  m.hidden = !text;
}

function errorText(body) {
  const key = body.error_key ? "e_" + body.error_key : "e_other";
  let text = S.texts[S.lang][key] ? t(key) : t("e_other");
  if (body.attempts_left !== undefined && body.attempts_left !== null) text += " (" + t("attempts_left") + ": " + body.attempts_left + ")";
  if (body.locked_for_s) text += " (" + Math.round(body.locked_for_s) + " " + t("seconds") + ")";
  if (body.error && !SELF_EXPLAINED.includes(body.error_key)) text += " — " + body.error;
  return text;
}

function reasonText(code, reason) {
  const key = REASON_KEYS[code];
  return (key ? t(key) + " — " : "") + (reason || "");
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
  off.textContent = s.signin_available ? "" : t("signin_unavailable") + " (" + s.signin_error + ")";
  $("signin-btn").disabled = !s.signin_available;
  $("badge-btn").disabled = !s.signin_available;
}

// -- sign-in --------------------------------------------------------------------
function signedIn(body) {
  S.token = body.token;
  S.officer = body;
  $("officer").textContent = body.name + " (" + body.officer_id + ")";
  $("signout").hidden = false;
  $("pin").value = "";
  say("", false);
  toIdentify();
}

function signedOut() {
  S.token = null; S.officer = null; S.kpm = null;
  $("officer").textContent = ""; $("signout").hidden = true;
  show("signin");
  say(t("e_signed_out"), true);
}

async function signIn() {
  const r = await api("POST", "/v1/session", { officer_id: $("officer-id").value.trim(), pin: $("pin").value });
  if (r.code === 200) signedIn(r.body); else { $("pin").value = ""; say(errorText(r.body), true); }
}

async function badge() {
  const r = await api("POST", "/v1/scan", {});
  if (r.code !== 200) { say(errorText(r.body), true); return; }
  const s = await api("POST", "/v1/session", { badge: r.body.code });
  if (s.code === 200) signedIn(s.body); else say(errorText(s.body), true);
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
  $("kpm-id").value = "";
  show("identify");
}

async function scanCard() {
  say("", false);
  const r = await api("POST", "/v1/scan", {});
  if (r.code !== 200) { say(errorText(r.body), true); return; }
  if (!r.body.kpm_id) { say(t("e_bad_kpm_id") + " — " + r.body.code, true); return; }
  $("kpm-id").value = r.body.kpm_id;
  await check(r.body.kpm_id);
}

async function check(kpmId) {
  say("", false);
  const id = (kpmId || $("kpm-id").value).trim();
  if (!id) { say(t("e_bad_kpm_id"), true); return; }
  const r = await api("GET", "/v1/kpm/" + encodeURIComponent(id));
  if (r.code !== 200) { say(errorText(r.body), true); return; }
  const k = r.body;
  if (!k.eligible) { say(t("d_" + k.decision) + ": " + reasonText(k.reason_code, k.reason), true); return; }
  S.kpm = k;
  toCapture();
}

// -- live preview with guidance ---------------------------------------------------------
function toCapture() {
  const k = S.kpm;
  $("capture-kpm").textContent = k.kpm_id;
  $("capture-prog").textContent = (k.programme || "").toUpperCase() + " " + (k.period || "");
  $("capture-attempts").textContent = k.attempts + " / " + k.max_attempts;
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
    if (S.screen !== "capture") return;
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
  const r = await api("POST", "/v1/verify", body);
  btn.disabled = false;
  if (r.code !== 200) {
    if (r.body.manual_allowed) toManual();
    say(errorText(r.body), true);
    return;
  }
  showResult(r.body);
}

function showResult(a) {
  S.kpm.attempts = a.attempts;
  $("result-kpm").textContent = a.kpm_id;
  $("result-prog").textContent = (a.programme || "").toUpperCase() + " " + (a.period || "");
  const d = $("decision");
  d.dataset.decision = a.decision;
  d.textContent = t("d_" + a.decision);
  const failed = ["no_match", "no_face", "poor_quality"].includes(a.decision);
  $("result-reason").textContent = a.decision === "match" ? "" : reasonText(a.reason_code, a.reason);
  const left = Math.max(0, a.max_attempts - a.attempts);
  $("result-attempts").textContent = failed ? t("attempts") + ": " + a.attempts + " / " + a.max_attempts + " (" + left + " " + t("attempts_left") + ")" : "";
  $("retry-btn").hidden = !failed || a.manual_allowed;
  $("manual-btn").hidden = !(failed && a.manual_allowed);
  show("result");
}

function toManual() {
  $("manual-kpm").textContent = S.kpm.kpm_id;
  $("manual-reason").value = "";
  show("manual");
}

function recordManual() {
  const reason = $("manual-reason").value.trim();
  if (reason.length < 5) { say(t("e_bad_reason"), true); return; }
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
