// Latency Lab peer: Express answering "OK" on / and /fast, as the seed article's Express figure.
// Usage: NODE_PATH=CACHE/node_modules node express_http.js PORT   (binds 127.0.0.1 only)
"use strict";
const express = require("express");

const port = Number.parseInt(process.argv[2], 10);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`usage: node express_http.js PORT (1-65535), got ${process.argv[2]}`);
  process.exit(2);
}

const app = express();
app.get(["/", "/fast"], (request, response) => {
  response.type("text/plain").send("OK");
});
const server = app.listen(port, "127.0.0.1");
server.keepAliveTimeout = 60_000; // same reason as in node_http.js
process.on("SIGTERM", () => server.close(() => process.exit(0)));
