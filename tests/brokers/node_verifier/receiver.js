// A webhook receiver for the tests: the seed's Express handler, on Node's plain http module (no npm
// install needed). It verifies each POST with the seed's verifyWebhook (verify_webhook.js), answers
// 401 'Invalid signature' or 200 as the seed's handler does, and prints one JSON line per request.
//
// usage: WEBHOOK_SECRET=... [PORT=...] node receiver.js   (prints "listening <port>" first, on 127.0.0.1)
'use strict';
const http = require('http');
const { verifyWebhook } = require('./verify_webhook');

const WEBHOOK_SECRET = process.env.WEBHOOK_SECRET;

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks); // express.raw() gives the same Buffer
    const sig = req.headers['x-webhook-signature'];
    let ok = false;
    try {
      ok = verifyWebhook(body.toString(), sig, WEBHOOK_SECRET);
    } catch (e) {
      ok = false; // timingSafeEqual throws on a missing or wrong-length signature
    }
    if (!ok) {
      console.log(JSON.stringify({ accepted: false, id: req.headers['x-webhook-id'] || null }));
      res.statusCode = 401;
      return res.end('Invalid signature');
    }
    const event = JSON.parse(body);
    console.log(JSON.stringify({ accepted: true, id: event.id, event: event.event }));
    res.statusCode = 200;
    res.end('OK');
  });
});

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log('listening ' + server.address().port);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
