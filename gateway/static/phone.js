// talkover softphone: one WebRTC call to the gateway's agent (no build step, no CDN).
// Signalling: POST /webrtc/offer with the complete offer (ICE gathered first, no trickle);
// hold = a re-offer with the transceiver sendonly; DTMF and hang-up on the data channel.
// window.softphone exposes what the page measured (tests read it).
"use strict";

const $ = (id) => document.getElementById(id);
const CHIME_HZ = [523.25, 659.25, 783.99];
const AUDIBLE_DBFS = -45;
const CONNECT_TIMEOUT_MS = 15000;

const softphone = window.softphone = {
  entry: new URLSearchParams(location.search).get("entry") ||
         (location.pathname.startsWith("/call/") ? decodeURIComponent(location.pathname.slice(6)) : ""),
  callId: "", callState: "idle", agentState: "", states: [], errors: [],
  clickAt: 0, firstAudioAt: 0, marks: {}, notes: {}, chimeHeard: false, peakHz: 0, agentDbfs: -100, digits: "",
};
let pc = null, mic = null, channel = null, transceiver = null, audioCtx = null, meterTimer = 0, held = false;

function setCallState(state) {
  softphone.callState = state;
  const el = $("call-state");
  el.textContent = state;
  el.className = "call-state " + state;
  const live = state === "calling" || state === "connected";
  $("call").disabled = live;
  $("hangup").disabled = !live;
  $("mute").disabled = $("hold").disabled = state !== "connected";
}

function setAgentState(state) {
  if (state === softphone.agentState) return;
  softphone.agentState = state;
  softphone.states.push(state);
  const el = $("agent-state");
  el.textContent = state || "—";
  el.className = "agent-state " + (state ? state.replace(" ", "-") : "none");
}

function showError(message) {
  softphone.errors.push(message);
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() { $("error").hidden = true; }

function micMessage(err) {
  if (err.name === "NotAllowedError" || err.name === "SecurityError")
    return "Microphone access was refused. Allow the microphone for this page, then press Call again.";
  if (err.name === "NotFoundError") return "No microphone was found. Connect one and press Call again.";
  if (!navigator.mediaDevices) return "This page needs a secure context (https or localhost) for the microphone.";
  return "The microphone could not be opened: " + err.message;
}

function httpMessage(status, body) {
  const why = body && body.error ? body.error : "HTTP " + status;
  if (status === 503) return "No line is free right now (" + why + "). Please try again in a minute.";
  if (status === 404) return "This agent does not exist (" + why + ").";
  return "The gateway refused the call: " + why;
}

function gathered(conn, ms) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (conn.iceGatheringState === "complete") { conn.removeEventListener("icegatheringstatechange", done); resolve(); } };
    conn.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);  // send what we have: host candidates come first
  });
}

async function post(path, body) {
  const resp = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
  const json = await resp.json().catch(() => ({}));
  if (!resp.ok) throw Object.assign(new Error(httpMessage(resp.status, json)), { status: resp.status });
  return json;
}

async function call() {
  clearError();
  softphone.clickAt = performance.now();
  softphone.firstAudioAt = 0; softphone.marks = {}; softphone.notes = {}; softphone.chimeHeard = false; softphone.states = [];
  setCallState("calling");
  audioCtx = audioCtx || new AudioContext();
  try {
    mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
  } catch (err) {
    showError(micMessage(err));
    setCallState("idle");
    return;
  }
  mark("microphone");
  pc = new RTCPeerConnection({ iceServers: [] });
  transceiver = pc.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv", streams: [mic] });
  channel = pc.createDataChannel("control");
  channel.onmessage = (ev) => onMessage(JSON.parse(ev.data));
  pc.ontrack = (ev) => onRemote(ev.streams[0] || new MediaStream([ev.track]));
  pc.onconnectionstatechange = () => {
    const s = pc && pc.connectionState;
    if (s === "connected") { mark("connected"); setCallState("connected"); }
    if (s === "failed") { showError("The connection to the gateway failed (network or firewall); the call has ended."); end("failed"); }
  };
  try {
    await pc.setLocalDescription();
    await gathered(pc, 3000);
    mark("gathered");
    const query = softphone.entry ? "?entry=" + encodeURIComponent(softphone.entry) : "";
    const answer = await post("/webrtc/offer" + query, { type: "offer", sdp: pc.localDescription.sdp });
    softphone.callId = answer.call_id;
    mark("answer");
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    const mine = pc;
    setTimeout(() => {
      if (pc === mine && softphone.callState === "calling") {
        showError("The call could not connect to the gateway (network or firewall blocks the media).");
        hangup("failed");
      }
    }, CONNECT_TIMEOUT_MS);
  } catch (err) {
    showError(err.status ? err.message : "Could not reach the gateway: " + err.message);
    end("failed");
    return;
  }
  meter(mic, $("mic-level"), null);
}

function mark(what) { softphone.marks[what] = Math.round(performance.now() - softphone.clickAt); }

function onRemote(stream) {
  $("remote").srcObject = stream;  // Chrome feeds WebAudio from a remote stream only while a media element plays it
  meter(stream, $("agent-level"), analyseAgent);
}

function onMessage(msg) {
  if (msg.type === "state") setAgentState(msg.state);
  if (msg.type === "ended") {
    if (channel && channel.readyState === "open") channel.send(JSON.stringify({ type: "ended_ack" }));  // the gateway waits for it before closing
    if (msg.reason !== "caller hung up") showError("The call was ended: " + msg.reason);
    end("ended");
  }
}

function meter(stream, bar, analyse) {
  const src = audioCtx.createMediaStreamSource(stream);
  const an = audioCtx.createAnalyser();
  an.fftSize = 4096;
  src.connect(an);
  const wave = new Float32Array(an.fftSize), spec = new Float32Array(an.frequencyBinCount);
  const tick = () => {
    if (!pc) return;
    an.getFloatTimeDomainData(wave);
    let sum = 0;
    for (const v of wave) sum += v * v;
    const dbfs = 10 * Math.log10(sum / wave.length + 1e-12);
    bar.style.width = Math.max(0, Math.min(100, (dbfs + 60) * 100 / 60)) + "%";
    if (analyse) { an.getFloatFrequencyData(spec); analyse(dbfs, spec, audioCtx.sampleRate / an.fftSize); }
    setTimeout(tick, 25);
  };
  tick();
}

function analyseAgent(dbfs, spec, binHz) {
  softphone.agentDbfs = dbfs;
  if (dbfs < AUDIBLE_DBFS) return;
  const now = performance.now();
  if (!softphone.firstAudioAt) { softphone.firstAudioAt = now; mark("first agent audio"); }
  let best = 0;
  for (let i = Math.floor(100 / binHz); i < Math.min(spec.length, 4000 / binHz); i++) if (spec[i] > spec[best]) best = i;
  softphone.peakHz = best * binHz;
  CHIME_HZ.forEach((hz, n) => {
    const prev = n === 0 ? true : softphone.notes[CHIME_HZ[n - 1]];
    if (prev && !softphone.notes[hz] && Math.abs(softphone.peakHz - hz) < 2 * binHz) softphone.notes[hz] = now;
  });
  softphone.chimeHeard = CHIME_HZ.every((hz) => softphone.notes[hz]);
}

function end(state) {
  if (pc) { pc.close(); pc = null; }
  if (mic) { mic.getTracks().forEach((t) => t.stop()); mic = null; }
  channel = null; held = false;
  $("hold").setAttribute("aria-pressed", "false"); $("hold").textContent = "Hold";
  $("mute").setAttribute("aria-pressed", "false"); $("mute").textContent = "Mute";
  $("mic-level").style.width = $("agent-level").style.width = "0";
  setAgentState("");
  setCallState(state);
}

function hangup(state = "ended") {
  if (channel && channel.readyState === "open") channel.send(JSON.stringify({ type: "hangup" }));
  else if (softphone.callId) fetch("/webrtc/calls/" + softphone.callId + "/hangup", { method: "POST", keepalive: true }).catch(() => {});
  end(state);
}

function mute() {
  const track = mic && mic.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  $("mute").setAttribute("aria-pressed", String(!track.enabled));
  $("mute").textContent = track.enabled ? "Mute" : "Unmute";
}

async function hold() {
  if (!pc || !softphone.callId) return;
  const want = !held;
  $("hold").disabled = true;
  try {
    transceiver.direction = want ? "sendonly" : "sendrecv";
    await pc.setLocalDescription();
    await gathered(pc, 1000);
    const answer = await post("/webrtc/calls/" + softphone.callId + "/offer", { type: "offer", sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    held = want;
    $("hold").setAttribute("aria-pressed", String(held));
    $("hold").textContent = held ? "Resume" : "Hold";
  } catch (err) {
    showError("Hold failed: " + err.message);
  } finally {
    $("hold").disabled = softphone.callState !== "connected";
  }
}

function dtmf(digit) {
  if (!channel || channel.readyState !== "open") return;
  channel.send(JSON.stringify({ type: "dtmf", digit, duration_ms: 160 }));
  softphone.digits += digit;
  $("digits").textContent = softphone.digits.slice(-16);
}

$("entry").textContent = softphone.entry || "default";
$("call").onclick = call;
$("hangup").onclick = () => hangup();
$("mute").onclick = mute;
$("hold").onclick = hold;
document.querySelectorAll(".keypad button").forEach((b) => { b.onclick = () => dtmf(b.dataset.digit); });
document.addEventListener("keydown", (ev) => { if ("0123456789*#".includes(ev.key) && ev.key.length === 1) dtmf(ev.key); });
window.addEventListener("pagehide", () => {
  if (pc && softphone.callId) navigator.sendBeacon("/webrtc/calls/" + softphone.callId + "/hangup");
});
setCallState("idle");
