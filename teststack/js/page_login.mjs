// Bundled into the test pages: a password login and a synced matrix-js-sdk client.
import { createClient, ClientEvent } from "matrix-js-sdk";

// With `crypto`, the client runs matrix-js-sdk's Rust crypto (its WebAssembly is fetched from
// the page's origin, /pkg/, where the runner serves it), its store in memory.
export async function loginAndSync(baseUrl, userId, password, crypto = false) {
  const response = await fetch(`${baseUrl}/_matrix/client/v3/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ type: "m.login.password", password,
                           identifier: { type: "m.id.user", user: userId } }),
  });
  const data = await response.json();
  const client = createClient({ baseUrl, userId, accessToken: data.access_token,
                                deviceId: data.device_id });
  if (crypto) await client.initRustCrypto({ useIndexedDB: false });
  await new Promise((resolve) => {
    client.on(ClientEvent.Sync, (s) => { if (s === "PREPARED") resolve(); });
    client.startClient({ initialSyncLimit: 20 });
  });
  return client;
}
