// Headless Debian Chromium for the call tests: a fake microphone playing `wav`, WebRTC on
// loopback, media allowed without a gesture.
import { chromium } from "playwright-core";

export function launchChromium(wav) {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${wav}`,
      "--autoplay-policy=no-user-gesture-required",
      "--force-webrtc-ip-handling-policy=default",
    ],
  });
}
