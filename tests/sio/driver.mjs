// A socket.io-client remote-controlled by the tests (tests/test_e2e_sio.py).
//
//   node driver.mjs URL TRANSPORTS [AUTH_JSON]
//
// TRANSPORTS is "polling", "websocket" or "polling,websocket" (polling first,
// then the upgrade). Every line written on stdout is one JSON object: what
// happened ({"event": NAME, ...}). Every line read on stdin is one JSON
// command:
//   {"op": "send", "args": [...]}                    socket.send(...args)
//   {"op": "emit", "name": N, "args": [...], "ack": K} socket.emit(N, ...args[, callback])
//   {"op": "close"}                                  socket.close(), then exit
// With "ack": K the callback's arguments are reported as {"event": "ack", "ack": K, "args": [...]}.
// The process exits by itself when stdin closes, and after LIFETIME at most.

import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const LIFETIME = 120000;
const [url, transports = "polling,websocket", authJson = "null"] = process.argv.slice(2);

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const auth = JSON.parse(authJson);
const options = {
  transports: transports.split(","),
  reconnection: false,
  timeout: 10000,
};
if (auth !== null) {
  options.auth = auth;
}
const socket = io(url, options);
const engine = socket.io.engine;

engine.on("open", () => out({ event: "engine-open", transport: engine.transport.name }));
engine.on("upgrade", (transport) => out({ event: "upgrade", transport: transport.name }));
engine.on("close", (reason) => out({ event: "engine-close", reason }));
socket.on("connect", () =>
  out({ event: "connect", id: socket.id, transport: socket.io.engine.transport.name })
);
socket.on("connect_error", (err) =>
  out({ event: "connect_error", message: err.message, data: err.data === undefined ? null : err.data })
);
socket.on("disconnect", (reason) => out({ event: "disconnect", reason }));
socket.onAny((name, ...args) => out({ event: "on", name, args }));

function finish(code) {
  socket.close();
  // Let the close packet go out before leaving.
  setTimeout(() => process.exit(code), 200);
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) {
    return;
  }
  const command = JSON.parse(line);
  const args = command.args || [];
  if (command.op === "send") {
    socket.send(...args);
  } else if (command.op === "emit") {
    if (command.ack !== undefined) {
      socket.emit(command.name, ...args, (...reply) => out({ event: "ack", ack: command.ack, args: reply }));
    } else {
      socket.emit(command.name, ...args);
    }
  } else if (command.op === "close") {
    finish(0);
  } else {
    out({ event: "bad-command", command });
  }
});
lines.on("close", () => finish(0));

setTimeout(() => {
  out({ event: "lifetime-over" });
  process.exit(3);
}, LIFETIME);
