// Bundled into the test pages: a password login and a synced matrix-js-sdk client.
import { createClient, ClientEvent } from "matrix-js-sdk";

export async function loginAndSync(baseUrl, userId, password) {
  const response = await fetch(`${baseUrl}/_matrix/client/v3/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ type: "m.login.password", password,
                           identifier: { type: "m.id.user", user: userId } }),
  });
  const data = await response.json();
  const client = createClient({ baseUrl, userId, accessToken: data.access_token,
                                deviceId: data.device_id });
  await new Promise((resolve) => {
    client.on(ClientEvent.Sync, (s) => { if (s === "PREPARED") resolve(); });
    client.startClient({ initialSyncLimit: 20 });
  });
  return client;
}
