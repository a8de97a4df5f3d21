// Runs the real Element Call app (npm @element-hq/element-call-embedded) in headless Chromium,
// hosted as a widget, through one call; prints the result.
// Usage: node element_call_run.mjs '{"baseUrl", "userId", "password", "roomId", "intent",
//   "transportUrl", "wav", "talkMs", "timeoutMs", "leave": "click"|"by_itself"}'
// Prints READY once logged in, JOINED once Element Call is in the call, HEARD once it measured.
// PAGE_LOG=1 in the environment prints the page's whole console.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { launchChromium } from "./chromium.mjs";

const job = JSON.parse(process.argv[2]);
const here = path.dirname(new URL(import.meta.url).pathname);
const app = path.join(here, "node_modules", "@element-hq", "element-call-embedded", "dist");
const cryptoWasm = path.join(here, "node_modules", "@matrix-org", "matrix-sdk-crypto-wasm", "pkg",
                             "matrix_sdk_crypto_wasm_bg.wasm");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
                ".css": "text/css", ".json": "application/json", ".wasm": "application/wasm",
                ".svg": "image/svg+xml", ".png": "image/png", ".woff2": "font/woff2",
                ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".webm": "audio/webm" };

function serveFile(res, file) {
  fs.readFile(file, (err, data) => {
    if (err) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
    res.end(data);
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://host");
  if (url.pathname === "/host.js") serveFile(res, path.join(here, "widget_host_bundle.js"));
  else if (url.pathname === "/pkg/matrix_sdk_crypto_wasm_bg.wasm") serveFile(res, cryptoWasm);
  else if (url.pathname.startsWith("/element-call/")) {
    const file = path.normalize(path.join(app, url.pathname.slice("/element-call/".length)));
    if (!file.startsWith(app)) { res.writeHead(403); res.end(); return; }
    serveFile(res, file);
  } else {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end('<!doctype html><html><body><script src="/host.js"></script></body></html>');
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}/`;

// In every frame: keep the remote audio tracks WebRTC delivers, and a way to measure them.
function probe() {
  const Original = window.RTCPeerConnection;
  if (!Original) return;
  window.remoteAudio = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("track", (e) => {
        if (e.track.kind === "audio") window.remoteAudio.push(e.track);
      });
    }
  };
  // The strongest frequency and the level of each live remote audio track over `ms`; the
  // loudest track's (LiveKit also hands out tracks of transceivers that carry nothing).
  window.measureRemote = async (ms) => {
    const tracks = window.remoteAudio.filter((t) => t.readyState === "live");
    if (!tracks.length) return { peakHz: 0, levelDb: -200, reason: "no remote audio track" };
    const context = new AudioContext();
    const probes = tracks.map((track) => {
      const stream = new MediaStream([track]);
      const audio = new Audio();  // Chrome only feeds WebAudio from a stream that is playing
      audio.srcObject = stream;
      audio.muted = true;
      audio.play().catch(() => {});
      const analyser = context.createAnalyser();
      analyser.fftSize = 8192;
      context.createMediaStreamSource(stream).connect(analyser);
      return { analyser, total: new Float32Array(analyser.frequencyBinCount), energy: 0,
               samples: 0 };
    });
    const bins = new Float32Array(8192 / 2);
    const time = new Float32Array(8192);
    const end = Date.now() + ms;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      for (const p of probes) {
        p.analyser.getFloatFrequencyData(bins);
        for (let i = 0; i < bins.length; i++) p.total[i] += Math.pow(10, bins[i] / 10);
        p.analyser.getFloatTimeDomainData(time);
        for (const v of time) { p.energy += v * v; p.samples++; }
      }
    }
    const heard = probes.map((p) => {
      let peak = 0;
      for (let i = 2; i < p.total.length; i++) if (p.total[i] > p.total[peak]) peak = i;
      return { peakHz: peak * context.sampleRate / 8192,
               levelDb: 10 * Math.log10(p.energy / Math.max(p.samples, 1) + 1e-12) };
    });
    await context.close();
    heard.sort((a, b) => b.levelDb - a.levelDb);
    return { ...heard[0], tracks: heard };
  };
}

const browser = await launchChromium(job.wav);
const result = { ok: false };
const waitHost = (check) => page.waitForFunction(check, null, { timeout: job.timeoutMs });
let page;
try {
  const context = await browser.newContext({ permissions: ["microphone", "camera"],
                                             viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  await page.addInitScript(probe);
  page.on("console", (m) => {
    if (m.type() === "error" || process.env.PAGE_LOG) console.error("page:", m.text());
  });
  await page.goto(origin);
  await page.waitForFunction(() => window.widgetHost !== undefined);
  const deviceId = await page.evaluate(([b, u, p]) => window.widgetHost.login(b, u, p),
                                       [job.baseUrl, job.userId, job.password]);
  console.log("READY");
  await page.evaluate(([room, intent, url, device]) => window.widgetHost.open(room, intent,
                      url, device), [job.roomId, job.intent, job.transportUrl, deviceId]);
  await waitHost(() => window.widgetHost.status().joined);
  console.log("JOINED");
  const frame = page.frames().find((f) => f.url().includes("/element-call/"));
  await frame.waitForFunction(() => window.remoteAudio.some((t) => t.readyState === "live"),
                              null, { timeout: job.timeoutMs });
  result.heard = await frame.evaluate((ms) => window.measureRemote(ms), job.talkMs);
  console.log("HEARD");
  if (job.leave === "click") await frame.click('[data-testid="incall_leave"]');
  await waitHost(() => !window.widgetHost.status().joined);
  result.status = await page.evaluate(() => window.widgetHost.status());
  result.ok = true;
} catch (e) {
  result.error = String(e && e.message || e);
  if (page) result.status = await page.evaluate(() => window.widgetHost.status()).catch(() => null);
} finally {
  await browser.close();
  server.close();
}
console.log("BROWSER-RESULT " + JSON.stringify(result));
