// Bundled for Chromium: a widget host for the real Element Call app, as Element Web hosts it —
// matrix-widget-api's ClientWidgetApi with a widget driver backed by matrix-js-sdk.
import { ClientEvent, RoomStateEvent, Direction } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import {
  ClientWidgetApi, OpenIDRequestState, Widget, WidgetDriver,
} from "matrix-widget-api";
import { loginAndSync } from "./page_login.mjs";

logger.setLevel("warn");
const CALL_MEMBER = "org.matrix.msc3401.call.member";
// Element Web answers these from Element Call with an empty reply (its Call model).
const ACKED_ACTIONS = ["io.element.join", "im.vector.hangup", "io.element.close",
                       "io.element.device_mute", "set_always_on_screen", "io.element.tile_layout"];
const state = { client: null, api: null, roomId: null, deviceId: null, actions: [], errors: [],
                sent: [], sentToDevice: [], receivedToDevice: [] };

async function login(baseUrl, userId, password) {
  const client = await loginAndSync(baseUrl, userId, password, true);
  state.client = client;
  return client.getDeviceId();
}

// What the widget asks of the client, done with matrix-js-sdk as Element Web's driver does.
class ClientDriver extends WidgetDriver {
  constructor(client, transportUrl) {
    super();
    this.client = client;
    this.transportUrl = transportUrl;
  }

  async validateCapabilities(requested) {
    // Element Web grants Element Call what it asks. Sticky events are not granted: this host
    // does not send them (and the widget then uses state-event memberships).
    return new Set([...requested].filter((c) => !c.includes("sticky_event")));
  }

  async sendEvent(eventType, content, stateKey = null, roomId = null) {
    state.sent.push({ type: eventType, stateKey, content });
    const response = stateKey !== null
      ? await this.client.sendStateEvent(roomId, eventType, content, stateKey)
      : await this.client.sendEvent(roomId, eventType, content);
    return { roomId, eventId: response.event_id };
  }

  async sendDelayedEvent(delay, eventType, content, stateKey = null, roomId = null) {
    const response = stateKey !== null
      ? await this.client._unstable_sendDelayedStateEvent(roomId, { delay }, eventType, content,
                                                          stateKey)
      : await this.client._unstable_sendDelayedEvent(roomId, { delay }, null, eventType, content);
    return { roomId, delayId: response.delay_id };
  }

  async cancelScheduledDelayedEvent(delayId) {
    await this.client._unstable_cancelScheduledDelayedEvent(delayId);
  }

  async restartScheduledDelayedEvent(delayId) {
    await this.client._unstable_restartScheduledDelayedEvent(delayId);
  }

  async sendScheduledDelayedEvent(delayId) {
    await this.client._unstable_sendScheduledDelayedEvent(delayId);
  }

  async sendToDevice(eventType, encrypted, contentMap) {
    const batches = new Map();  // one payload → its recipients, as Element Web batches them
    for (const [userId, devices] of Object.entries(contentMap)) {
      for (const [deviceId, payload] of Object.entries(devices)) {
        const text = JSON.stringify(payload);
        if (!batches.has(text)) batches.set(text, []);
        batches.get(text).push({ userId, deviceId });
      }
    }
    for (const [text, recipients] of batches) {
      const payload = JSON.parse(text);
      const batch = encrypted
        ? await this.client.getCrypto().encryptToDeviceMessages(eventType, recipients, payload)
        : { eventType, batch: recipients.map((r) => ({ ...r, payload })) };
      state.sentToDevice.push({ type: eventType, encrypted, to: recipients.length,
                                delivered: batch.batch.length });
      await this.client.queueToDevice(batch);
    }
  }

  async readRoomState(roomId, eventType, stateKey) {
    const room = this.client.getRoom(roomId);
    if (!room) return [];
    const roomState = room.getLiveTimeline().getState(Direction.Forward);
    const events = stateKey === undefined
      ? roomState.getStateEvents(eventType)
      : [roomState.getStateEvents(eventType, stateKey)].filter(Boolean);
    return events.map((e) => e.getEffectiveEvent());
  }

  askOpenID(observer) {
    this.client.getOpenIdToken().then(
      (token) => observer.update({ state: OpenIDRequestState.Allowed, token }),
      () => observer.update({ state: OpenIDRequestState.Blocked }),
    );
  }

  async getRtcTransports() {
    return { rtc_transports: [{ type: "livekit", livekit_service_url: this.transportUrl }] };
  }

  processError(error) {
    return error && typeof error.asWidgetApiErrorData === "function"
      ? { matrix_api_error: error.asWidgetApiErrorData() } : undefined;
  }
}

// Opens Element Call in an iframe for `roomId` with the URL Element Web builds for it.
function open(roomId, intent, transportUrl, deviceId) {
  const client = state.client;
  state.roomId = roomId;
  state.deviceId = deviceId;
  const widgetId = `element-call-${Date.now()}`;
  const fragment = new URLSearchParams({
    userId: client.getUserId(), deviceId, roomId, baseUrl: client.baseUrl,
    lang: "en", theme: "dark", fontScale: "1", intent, skipLobby: "true", preload: "false",
    confineToRoom: "true", header: "none",
  });
  const query = new URLSearchParams({ widgetId, parentUrl: window.location.href });
  const url = `${window.location.origin}/element-call/index.html?${query}#?${fragment}`;
  const iframe = document.createElement("iframe");
  iframe.allow = "microphone; camera; autoplay; display-capture";
  iframe.style.width = "1200px";
  iframe.style.height = "850px";
  iframe.src = url;
  document.body.appendChild(iframe);
  const widget = new Widget({ id: widgetId, creatorUserId: client.getUserId(), type: "m.call",
                              url, waitForIframeLoad: false, data: {} });
  const api = new ClientWidgetApi(widget, iframe, new ClientDriver(client, transportUrl));
  state.api = api;
  for (const action of ACKED_ACTIONS) {
    api.on(`action:${action}`, (ev) => {
      state.actions.push(action);
      ev.preventDefault();
      api.transport.reply(ev.detail, {});
    });
  }
  api.on("error:preparing", (e) => state.errors.push(`preparing: ${e}`));
  api.once("ready", () => api.setViewedRoomId(roomId));
  api.setViewedRoomId(roomId);
  // Room events reach the widget decrypted, as Element Web feeds them.
  client.on(ClientEvent.Event, async (event) => {
    if (event.getRoomId() !== roomId || event.isState()) return;
    await client.decryptEventIfNeeded(event);
    if (!event.isDecryptionFailure()) api.feedEvent(event.getEffectiveEvent());
  });
  client.on(RoomStateEvent.Events, (event) => {
    if (event.getRoomId() === roomId) api.feedStateUpdate(event.getEffectiveEvent());
  });
  client.on(ClientEvent.ReceivedToDeviceMessage, (payload) => {
    const encrypted = payload.encryptionInfo != null;
    state.receivedToDevice.push({ type: payload.message.type, sender: payload.message.sender,
                                  encrypted });
    api.feedToDevice(payload.message, encrypted);
  });
}

// Whether this device's call membership is in the room's state (Element Call leaves by
// sending its delayed leave event, not through sendEvent).
function joined() {
  const room = state.roomId && state.client.getRoom(state.roomId);
  if (!room) return false;
  const key = `_${state.client.getUserId()}_${state.deviceId}_m.call`;
  const event = room.getLiveTimeline().getState(Direction.Forward).getStateEvents(CALL_MEMBER, key);
  return Boolean(event && Object.keys(event.getContent()).length > 0);
}

function status() {
  return { actions: state.actions, errors: state.errors, joined: joined(),
           sent: state.sent.map((e) => e.type), sentToDevice: state.sentToDevice,
           receivedToDevice: state.receivedToDevice };
}

window.widgetHost = { login, open, status };
