// Latency Lab peer: Node's `ws` package echoing each message on /ws/echo, "OK" on / and /fast
// over plain HTTP (the readiness probe). permessage-deflate off, as in the lab's default.
// Usage: NODE_PATH=CACHE/node_modules node node_ws.js PORT   (binds 127.0.0.1 only)
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");

const port = Number.parseInt(process.argv[2], 10);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`usage: node node_ws.js PORT (1-65535), got ${process.argv[2]}`);
  process.exit(2);
}

const server = http.createServer((request, response) => {
  if (request.url === "/" || request.url === "/fast") {
    response.writeHead(200, { "Content-Type": "text/plain", "Content-Length": "2" });
    response.end("OK");
  } else {
    response.writeHead(404, { "Content-Type": "text/plain" });
    response.end("not found\n");
  }
});
server.keepAliveTimeout = 60_000;
const sockets = new WebSocketServer({ server, path: "/ws/echo", perMessageDeflate: false });
sockets.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
});
server.listen(port, "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
