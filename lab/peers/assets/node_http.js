// Latency Lab peer: Node.js's own http module answering "OK" on / and /fast.
// Usage: node node_http.js PORT   (binds 127.0.0.1 only)
"use strict";
const http = require("http");

const port = Number.parseInt(process.argv[2], 10);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`usage: node node_http.js PORT (1-65535), got ${process.argv[2]}`);
  process.exit(2);
}

const OK_HEADERS = { "Content-Type": "text/plain", "Content-Length": "2" };
const NOT_FOUND_HEADERS = { "Content-Type": "text/plain", "Content-Length": "10" };

const server = http.createServer((request, response) => {
  if (request.url === "/" || request.url === "/fast") {
    response.writeHead(200, OK_HEADERS);
    response.end("OK");
  } else {
    response.writeHead(404, NOT_FOUND_HEADERS);
    response.end("not found\n");
  }
});
// Node closes idle keep-alive connections after 5 s by default; a load generator that pauses
// between runs (warm-up, then measurement) would see resets it did not cause.
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
