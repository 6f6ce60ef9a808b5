// Several socket.io-clients in one node process, remote-controlled by the
// fault harness (tests/chaos/clients.py), one JSON object a line both ways.
//
//   node chaos_driver.mjs
//
// Commands (stdin):
//   {"op": "open", "id": I, "url": U, "transports": [...], "auth": {...} | null}
//       a socket that reconnects by itself (socket.io-client's Manager);
//       in json mode (auth.mode == "json") its auth is a FUNCTION that
//       sends, on every (re)connection, the base auth plus "since": the
//       epoch and highest id seen per room, kept here from the events
//   {"op": "auth", "id": I, "auth": {...}}     replace the base auth (a new owner token)
//   {"op": "emit", "id": I, "name": N, "args": [...], "ack": K}
//   {"op": "send", "id": I, "args": [...]}
//   {"op": "close", "id": I}                  close that socket for good
// Events (stdout), each with the socket's "id":
//   connect, disconnect {reason}, connect_error {message, data},
//   on {name, args} (every server event), ack {ack, args}.
// The process exits when stdin closes, and after LIFETIME at most.

import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const LIFETIME = Number(process.env.CHAOS_DRIVER_LIFETIME || 3600000);
const sockets = new Map();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function track(state, event) {
  // The resume position of a json-mode socket: per room, the epoch and the
  // highest id seen, of a message or of an update (its seq; an epoch event
  // starts the room over).
  const seen = (m) => {
    const old = state.since[m.room];
    if (old === undefined || old.epoch !== m.epoch || m.id > old.id) {
      state.since[m.room] = { epoch: m.epoch, id: m.id };
    }
  };
  if (event.type === "message") {
    seen(event);
  } else if ((event.type === "edit" || event.type === "delete" || event.type === "react") && event.room) {
    seen({ room: event.room, epoch: event.epoch, id: event.seq });
  } else if (event.type === "history") {
    for (const m of event.messages || []) {
      seen(m);
    }
    for (const u of event.updates || []) {
      seen({ room: u.room, epoch: u.epoch, id: u.seq });
    }
  } else if (event.type === "epoch") {
    state.since[event.room] = { epoch: event.epoch, id: 0 };
  } else if (event.type === "welcome" && event.token) {
    state.base = { ...state.base, token: event.token };
  }
}

function open(command) {
  const id = command.id;
  const state = { base: command.auth, since: {} };
  const json = command.auth !== null && command.auth.mode === "json";
  const options = {
    transports: command.transports,
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 2000,
    randomizationFactor: 0.3,
    timeout: 5000,
    forceNew: true,
  };
  if (json) {
    options.auth = (cb) => {
      const auth = { ...state.base };
      if (Object.keys(state.since).length) {
        auth.since = state.since;
      }
      cb(auth);
    };
  } else if (command.auth !== null) {
    options.auth = command.auth;
  }
  const socket = io(command.url, options);
  sockets.set(id, { socket, state });
  socket.on("connect", () => out({ id, event: "connect", transport: socket.io.engine.transport.name }));
  socket.on("connect_error", (err) =>
    out({ id, event: "connect_error", message: err.message, data: err.data === undefined ? null : err.data })
  );
  socket.on("disconnect", (reason) => out({ id, event: "disconnect", reason }));
  socket.onAny((name, ...args) => {
    if (json && args.length && typeof args[0] === "object" && args[0] !== null) {
      track(state, args[0]);
    }
    out({ id, event: "on", name, args });
  });
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) {
    return;
  }
  const command = JSON.parse(line);
  if (command.op === "open") {
    open(command);
    return;
  }
  const entry = sockets.get(command.id);
  if (entry === undefined) {
    out({ id: command.id, event: "bad-command", command });
    return;
  }
  const { socket, state } = entry;
  const args = command.args || [];
  if (command.op === "emit") {
    if (command.ack !== undefined) {
      socket.emit(command.name, ...args, (...reply) => out({ id: command.id, event: "ack", ack: command.ack, args: reply }));
    } else {
      socket.emit(command.name, ...args);
    }
  } else if (command.op === "send") {
    socket.send(...args);
  } else if (command.op === "auth") {
    state.base = command.auth;
  } else if (command.op === "close") {
    socket.close();
    sockets.delete(command.id);
  } else {
    out({ id: command.id, event: "bad-command", command });
  }
});
lines.on("close", () => {
  for (const { socket } of sockets.values()) {
    socket.close();
  }
  setTimeout(() => process.exit(0), 200);
});

setTimeout(() => {
  out({ event: "lifetime-over" });
  process.exit(3);
}, LIFETIME);
