// Runs one call in headless Chromium with matrix-js-sdk's call code and prints the result.
// Usage: node browser_run.mjs '{"mode": "place"|"answer", "baseUrl", "userId", "password",
//   "roomId", "wav", "talkMs", "timeoutMs"}'
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { launchChromium } from "./chromium.mjs";

const job = JSON.parse(process.argv[2]);
const here = path.dirname(new URL(import.meta.url).pathname);
const bundle = fs.readFileSync(path.join(here, "browser_bundle.js"));
const server = http.createServer((req, res) => {
  if (req.url === "/bundle.js") {
    res.writeHead(200, { "Content-Type": "text/javascript" });
    res.end(bundle);
  } else {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end('<!doctype html><html><body><script src="/bundle.js"></script></body></html>');
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}/`;

const browser = await launchChromium(job.wav);
const result = { ok: false };
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error("page:", m.text()); });
  await page.goto(origin);
  await page.waitForFunction(() => window.bridgeTest !== undefined);
  await page.evaluate(([b, u, p]) => window.bridgeTest.login(b, u, p),
                      [job.baseUrl, job.userId, job.password]);
  console.log("READY");
  if (job.mode === "place") {
    await page.evaluate((room) => window.bridgeTest.placeCall(room), job.roomId);
  } else {
    await page.evaluate((t) => window.bridgeTest.answer(t), job.timeoutMs);
  }
  await page.waitForFunction(
    () => { const s = window.bridgeTest.status(); return s.callState === "connected" ||
            s.callState === "ended"; }, null, { timeout: job.timeoutMs });
  result.heard = await page.evaluate((ms) => window.bridgeTest.measure(ms), job.talkMs);
  if (job.dtmf) await page.evaluate((d) => window.bridgeTest.sendDtmf(d), job.dtmf);
  if (job.mode === "place") await page.evaluate(() => window.bridgeTest.hangup());
  else await page.waitForFunction(() => window.bridgeTest.status().callState === "ended",
                                  null, { timeout: job.timeoutMs });
  result.status = await page.evaluate(() => window.bridgeTest.status());
  result.ok = true;
} catch (e) {
  result.error = String(e && e.message || e);
} finally {
  await browser.close();
  server.close();
}
console.log("BROWSER-RESULT " + JSON.stringify(result));
