// A Matrix user on matrix-js-sdk with its Rust crypto (Element Web's), in Node: makes an
// encrypted room with a peer (the bot, a ghost), reads its first message matching
// `greeting`, then, given a `command`, sends it and reads the answer matching `expect`.
// Usage: node encrypted_chat.mjs '{"baseUrl", "userId", "password", "peer", "greeting",
//   "command", "expect", "timeoutMs"}'   Prints CHAT-RESULT {...}.
import { createClient, ClientEvent } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("warn");
const job = JSON.parse(process.argv[2]);
const result = { ok: false };

async function login() {
  const response = await fetch(`${job.baseUrl}/_matrix/client/v3/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ type: "m.login.password", password: job.password,
                           identifier: { type: "m.id.user", user: job.userId } }),
  });
  const data = await response.json();
  const client = createClient({ baseUrl: job.baseUrl, userId: data.user_id,
                                accessToken: data.access_token, deviceId: data.device_id });
  await client.initRustCrypto({ useIndexedDB: false });
  await new Promise((resolve) => {
    client.on(ClientEvent.Sync, (s) => { if (s === "PREPARED") resolve(); });
    client.startClient({ initialSyncLimit: 20 });
  });
  return client;
}

async function until(what, check) {
  const deadline = Date.now() + job.timeoutMs;
  for (;;) {
    const found = check();
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// A message from the peer, once decrypted (or failed), matching `pattern`, after `since`.
function botMessage(room, pattern, since) {
  for (const event of room.getLiveTimeline().getEvents()) {
    if (event.getSender() !== job.peer || event.getTs() < since) continue;
    if (event.isBeingDecrypted()) continue;
    if (event.isDecryptionFailure()) {
      return { encrypted: true, failed: true, reason: event.decryptionFailureReason };
    }
    if (event.getType() !== "m.room.message") continue;
    const body = event.getContent().body || "";
    if (pattern.test(body)) {
      return { encrypted: event.isEncrypted(), wireType: event.getWireType(), body,
               msgtype: event.getContent().msgtype };
    }
  }
  return null;
}

let client;
try {
  client = await login();
  const started = Date.now();
  const { room_id: roomId } = await client.createRoom({
    invite: [job.peer],
    is_direct: Boolean(job.direct),
    initial_state: [{ type: "m.room.encryption", state_key: "",
                      content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  result.roomId = roomId;
  const room = await until("the room", () => client.getRoom(roomId));
  await until("the peer to join", () => room.getMember(job.peer)?.membership === "join");
  result.hello = await until("the peer's greeting", () =>
    botMessage(room, new RegExp(job.greeting), started));
  if (job.command) {
    const sent = Date.now();
    await client.sendTextMessage(roomId, job.command);
    result.reply = await until("the peer's answer", () =>
      botMessage(room, new RegExp(job.expect), sent));
  }
  const ours = room.getLiveTimeline().getEvents().filter((e) => e.getSender() === job.userId
    && e.getWireType() === "m.room.encrypted");
  result.sentEncrypted = ours.length > 0;
  result.ok = true;
} catch (e) {
  result.error = String(e && e.message || e);
} finally {
  if (client) client.stopClient();
}
console.log("CHAT-RESULT " + JSON.stringify(result));
process.exit(0);
