// Bundled for Chromium: matrix-js-sdk's own 1:1 call code (Element Web's), driven by a test.
import { CallEvent } from "matrix-js-sdk/lib/webrtc/call.js";
import { CallEventHandlerEvent } from "matrix-js-sdk/lib/webrtc/callEventHandler.js";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { loginAndSync } from "./page_login.mjs";

logger.setLevel("warn");
const state = { client: null, call: null, states: [], error: null };

async function login(baseUrl, userId, password) {
  const client = await loginAndSync(baseUrl, userId, password);
  state.client = client;
  client.on(CallEventHandlerEvent.Incoming, (call) => { watch(call); state.incoming = call; });
}

function watch(call) {
  state.call = call;
  call.on(CallEvent.State, (s) => state.states.push(s));
  call.on(CallEvent.Error, (e) => { state.error = String(e && e.message || e); });
}

async function placeCall(roomId) {
  const call = state.client.createCall(roomId);
  watch(call);
  await call.placeVoiceCall();
}

async function answer(timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!state.incoming) {
    if (Date.now() > deadline) throw new Error("no incoming call");
    await new Promise((r) => setTimeout(r, 100));
  }
  await state.incoming.answer(true, false);
}

function remoteStream() {
  const feeds = state.call ? state.call.getRemoteFeeds() : [];
  return feeds.length ? feeds[0].stream : null;
}

// The strongest frequency and the level of what the remote party sends, over `ms`.
async function measure(ms) {
  const stream = remoteStream();
  if (!stream) return { peakHz: 0, levelDb: -200, reason: "no remote stream" };
  const audio = new Audio();  // Chrome only feeds WebAudio from a stream that is playing
  audio.srcObject = stream;
  audio.muted = true;
  await audio.play().catch(() => {});
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  context.createMediaStreamSource(stream).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const total = new Float32Array(analyser.frequencyBinCount);
  const time = new Float32Array(analyser.fftSize);
  let energy = 0, samples = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    analyser.getFloatFrequencyData(bins);
    for (let i = 0; i < bins.length; i++) total[i] += Math.pow(10, bins[i] / 10);
    analyser.getFloatTimeDomainData(time);
    for (const v of time) { energy += v * v; samples++; }
  }
  let peak = 0;
  for (let i = 2; i < total.length; i++) if (total[i] > total[peak]) peak = i;
  await context.close();
  return { peakHz: peak * context.sampleRate / analyser.fftSize,
           levelDb: 10 * Math.log10(energy / Math.max(samples, 1) + 1e-12) };
}

function hangup() { if (state.call) state.call.hangup("user_hangup", false); }

// Element's in-call dial pad: RFC 4733 telephone-events on the audio sender.
async function sendDtmf(digits) {
  for (const digit of digits) {
    state.call.sendDtmfDigit(digit);
    await new Promise((r) => setTimeout(r, 500));
  }
}

// Read from the call itself: the SDK sets the reason and the Ended state together, but emits
// its Hangup event only after collecting call stats, so a listener could still be unset.
function status() {
  return { states: state.states, hangupReason: state.call ? state.call.hangupReason : null,
           error: state.error,
           callState: state.call ? state.call.state : null,
           dialPad: state.call ? state.call.opponentSupportsDTMF() : false };
}

window.bridgeTest = { login, placeCall, answer, measure, hangup, sendDtmf, status };
