// Reads a room as a real client does, with matrix-js-sdk's MatrixRTC code, and prints JSON:
// the session's memberships and, for each rtc.notification in the timeline, whether the SDK
// accepts it as a ring for this user (parseCallNotificationContent).
// Usage: node rtc_check.mjs BASE_URL USER_ID ACCESS_TOKEN ROOM_ID
import { createClient, ClientEvent } from "matrix-js-sdk";
import { parseCallNotificationContent } from "matrix-js-sdk/lib/matrixrtc/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("silent");
const [baseUrl, userId, accessToken, roomId] = process.argv.slice(2);
const client = createClient({ baseUrl, userId, accessToken, deviceId: "RTCCHECK" });

await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("no initial sync")), 20000);
  client.on(ClientEvent.Sync, (state) => {
    if (state === "PREPARED") { clearTimeout(timer); resolve(); }
  });
  client.startClient({ initialSyncLimit: 50, lazyLoadMembers: false });
});

const room = client.getRoom(roomId);
if (!room) throw new Error(`not in room ${roomId}`);
const session = client.matrixRTC.getRoomSession(room);
await session.ensureRecalculateSessionMembers();  // memberships are computed asynchronously
const memberships = session.memberships.map((m) => ({
  sender: m.sender, deviceId: m.deviceId, slotId: m.slotId,
}));
const notifications = [];
for (const event of room.getLiveTimeline().getEvents()) {
  if (event.getType() !== "org.matrix.msc4075.rtc.notification") continue;
  try {
    const parsed = await parseCallNotificationContent(event, { room, userId });
    notifications.push({ eventId: event.getId(), sender: event.getSender(), valid: true,
                         type: parsed.notification_type });
  } catch (e) {
    notifications.push({ eventId: event.getId(), sender: event.getSender(), valid: false,
                         error: String(e.message) });
  }
}
console.log("RTC-VIEW " + JSON.stringify({ memberships, notifications }));
client.stopClient();
process.exit(0);
